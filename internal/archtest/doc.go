// Package archtest holds the tests that keep the repository's shape: the
// import graph is the layout table of docs/architecture.md, arrow for arrow,
// and production functions are of a readable length. The builds for every
// supported platform are a step of the test command (.ci/crossbuild), not a
// test: they would cost minutes under go test.
package archtest
