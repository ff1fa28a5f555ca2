// Package s3test gives tests a real S3 server: versitygw over a temporary
// directory, started on 127.0.0.1 with a fresh bucket.
//
// The binary is found on PATH or in GOPATH/bin (.ci/run installs it with
// go install github.com/versity/versitygw/cmd/versitygw@v1.8.0). When it
// is missing the test is skipped with a loud reason, unless
// RINGMASTER_REQUIRE_S3=1 (as in .ci/run), which makes it fail.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/ringmaster/ringmaster/internal/config"
)

// Server is a running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Bucket   string
	Access   string
	Secret   string
	Region   string
	cmd      *exec.Cmd
}

// Binary returns the versitygw executable, or "" if none is installed.
func Binary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start runs versitygw for t (stopped when t ends) with one empty bucket.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "S3 TESTS SKIPPED: versitygw is not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0; .ci/run does)"
		if os.Getenv("RINGMASTER_REQUIRE_S3") == "1" {
			t.Fatal(msg + " (RINGMASTER_REQUIRE_S3=1)")
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	root, meta := filepath.Join(dir, "root"), filepath.Join(dir, "meta")
	for _, d := range []string{root, meta} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Endpoint: "http://" + addr, Bucket: "ringmaster", Access: "rmtestaccess", Secret: "rmtestsecret0123456789", Region: "us-east-1"}
	var out bytes.Buffer
	// A sidecar directory keeps object metadata where the file system
	// has no extended attributes (tmpfs, overlay).
	s.cmd = exec.Command(bin, "--access", s.Access, "--secret", s.Secret, "--port", addr, "--quiet", "posix", "--sidecar", meta, root)
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	client := s.Client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.Bucket})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not start: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// Env is the environment that points the AWS chain and Ringmaster at this
// server, as KEY=VALUE pairs.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.Access, "AWS_SECRET_ACCESS_KEY=" + s.Secret, "AWS_REGION=" + s.Region,
		"RINGMASTER_CONTENT_S3_BUCKET=" + s.Bucket, "RINGMASTER_CONTENT_S3_ENDPOINT=" + s.Endpoint,
		"RINGMASTER_CONTENT_S3_PATH_STYLE=true",
	}
}

// SetEnv sets Env for the rest of t (so not in parallel tests).
func (s *Server) SetEnv(t testing.TB) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Client is an S3 client of this server, for a test to look into the
// bucket.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: s.Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.Access, s.Secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// String names the server in test logs.
func (s *Server) String() string {
	return fmt.Sprintf("versitygw at %s, bucket %s", s.Endpoint, s.Bucket)
}

// Apply points a server's configuration at this server's bucket (the
// credentials come from the environment: SetEnv).
func (s *Server) Apply(c *config.Config) {
	c.Content.S3 = config.S3{Bucket: s.Bucket, Endpoint: s.Endpoint, PathStyle: true}
}
