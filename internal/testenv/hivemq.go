package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RepoRoot finds the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

var (
	launcherOnce sync.Once
	launcherJar  string
	launcherErr  error
)

// hivemqLauncher builds deploy/hivemq/embedded once per test process, and
// not at all when its jar is newer than its sources. Concurrent test
// processes serialise on a lock file. Maven runs offline first (the local
// repository usually has everything after .ci/run), then online.
func hivemqLauncher(t testing.TB) string {
	t.Helper()
	LookPath(t, "java")
	mvn := LookPath(t, "mvn")
	root := RepoRoot(t)
	launcherOnce.Do(func() {
		dir := filepath.Join(root, "deploy", "hivemq", "embedded")
		jar := filepath.Join(dir, "target", "hivemq-launcher.jar")
		lock, err := os.OpenFile(filepath.Join(os.TempDir(), "mqtt-authproxy-hivemq-build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			launcherErr = err
			return
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			launcherErr = err
			return
		}
		defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		if upToDate(jar, filepath.Join(dir, "pom.xml"), filepath.Join(dir, "src")) {
			launcherJar = jar
			return
		}
		var out []byte
		for _, args := range [][]string{{"-q", "-B", "-o", "package"}, {"-q", "-B", "package"}} {
			cmd := exec.Command(mvn, append([]string{"-Dstyle.color=never"}, args...)...)
			cmd.Dir = dir
			if out, err = cmd.CombinedOutput(); err == nil {
				launcherJar = jar
				return
			}
		}
		launcherErr = fmt.Errorf("building the HiveMQ launcher: %v\n%s", err, out)
	})
	if launcherErr != nil {
		t.Fatal(launcherErr)
	}
	return launcherJar
}

// upToDate reports whether target exists and is newer than every file under srcs.
func upToDate(target string, srcs ...string) bool {
	st, err := os.Stat(target)
	if err != nil {
		return false
	}
	for _, src := range srcs {
		stale := errors.New("stale")
		err := filepath.Walk(src, func(_ string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if fi.ModTime().After(st.ModTime()) {
				return stale
			}
			return nil
		})
		if err != nil {
			return false
		}
	}
	return true
}

// HiveMQ starts a real, unmodified HiveMQ CE (embedded, from Maven Central,
// via deploy/hivemq/embedded) on a free loopback port, configured from
// deploy/hivemq/config.xml. Its output has one "HIVEMQ CONNECT ..." line per
// CONNECT received. Java and Maven are required: missing, the test fails
// under CI and is skipped elsewhere.
func HiveMQ(t testing.TB) *Server {
	t.Helper()
	jar := hivemqLauncher(t)
	java := LookPath(t, "java")
	dir := t.TempDir()
	port := FreePort(t)
	template := filepath.Join(RepoRoot(t), "deploy", "hivemq", "config.xml")
	s := newServer(t, "hivemq", java, dir, port, "-Xmx512m", "-XX:+UseSerialGC", "-Xss512k",
		"-jar", jar, template, strconv.Itoa(port), filepath.Join(dir, "work"))
	s.WaitOutput("HIVEMQ READY", 60*time.Second)
	return s
}
