// Package archtest holds the tests that keep the repository's shape: the
// one-way import graph of README's layout table, functions of a readable
// length in proxy/, and builds for every supported platform.
package archtest
