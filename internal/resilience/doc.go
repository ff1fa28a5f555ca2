// Package resilience holds end-to-end tests of a server whose
// dependencies fail under it (a hung database, say): what keeps working,
// what fails fast and says why, and that it recovers.
package resilience
