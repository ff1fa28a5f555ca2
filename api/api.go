// Package api embeds the OpenAPI description of Ringmaster's HTTP API, served
// at /v1/openapi.yaml.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document.
//
//go:embed openapi.yaml
var OpenAPI []byte
