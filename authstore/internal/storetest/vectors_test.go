package storetest

import (
	"os/exec"
	"strings"
	"testing"
)

// TestVectorsAreIndependent makes every vector again with the tool
// that made it, where that tool is installed (Python 3.11's crypt module,
// the argon2 command); the vectors are the tools', not this package's.
func TestVectorsAreIndependent(t *testing.T) {
	ran := 0
	for _, v := range vectorCommands {
		bin := v.cmd[0]
		if bin == "sh" {
			bin = "argon2"
		}
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		out, err := exec.Command(v.cmd[0], v.cmd[1:]...).Output()
		if err != nil {
			continue // e.g. a Python without the crypt module (3.13)
		}
		ran++
		if got := strings.TrimSpace(string(out)); got != v.want {
			t.Errorf("%v made %q, the vector is %q", v.cmd, got, v.want)
		}
	}
	if ran == 0 {
		t.Skip("neither python3 nor argon2 is installed")
	}
	t.Logf("%d of %d vectors made again", ran, len(vectorCommands))
}
