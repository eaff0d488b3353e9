package app

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// artifactDirs are where a test's artifacts go: TEST_ARTIFACTS (or a
// temporary directory of the test) and /tmp/authproxy-artifacts.
func artifactDirs(t *testing.T) []string {
	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	return []string{dir, filepath.Join(os.TempDir(), "authproxy-artifacts")}
}

// TestWebSocketBrowser: a real browser (Debian's chromium, headless)
// opens a page served by the test, which loads MQTT.js's browser bundle
// from the test's own files, connects through the proxy over wss (the
// page's origin listed in WS_ORIGINS), subscribes, and shows a message
// that mosquitto_pub published through the proxy's TLS listener. The test
// reads the page's DOM and saves a screenshot (browser-wss.png). Chromium
// is started with --ignore-certificate-errors: the proxy's certificate is
// issued by the test's own CA, which the browser does not know.
func TestWebSocketBrowser(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	pub := testenv.LookPath(t, "mosquitto_pub")
	dir := jsDir(t)

	// The page and the bundle, from the test's files only.
	pageLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, filepath.Join(dir, "page.html")) })
	mux.HandleFunc("/mqtt.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "node_modules", "mqtt", "dist", "mqtt.min.js"))
	})
	page := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = page.Serve(pageLn) }()
	t.Cleanup(func() { page.Close() })
	origin := "http://" + pageLn.Addr().String()

	e := startEdge(t, func(c *Config) { c.WSOrigins = origin })
	e.user("browser", "browser-pw")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(900, 500))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	q := url.Values{"url": {"wss://127.0.0.1:" + strconv.Itoa(e.app.Addrs().WS.(*net.TCPAddr).Port) + "/mqtt"},
		"user": {"browser"}, "pass": {"browser-pw"}, "client": {"browser:page"}, "topic": {"browser/demo"}}
	if _, err := chromedp.Run(bctx, chromedp.Navigate(origin+"/?"+q.Encode())); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.getElementById('status').textContent === 'subscribed' ||
		document.getElementById('status').textContent.startsWith('error')`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the page did not subscribe: %v", err)
	}
	status, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("status")))
	if err != nil || status != "subscribed" {
		t.Fatalf("page status %q %v", status, err)
	}
	if line := e.connectLine("browser:page"); !strings.Contains(line, "outcome=accepted") {
		t.Fatalf("connect line %q", line)
	}

	out, err := exec.CommandContext(ctx, pub, "-h", "127.0.0.1", "-p", strconv.Itoa(e.app.Addrs().TLS.(*net.TCPAddr).Port),
		"--cafile", e.files.CA, "-V", "5", "-i", "browser:pub", "-u", "browser", "-P", "browser-pw", "-q", "1",
		"-t", "browser/demo", "-m", "hello, browser").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS("#messages li"))); err != nil {
		t.Fatalf("the message did not show: %v", err)
	}
	shown, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#messages li")))
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG (below, JPEG)
	if err != nil {
		t.Fatal(err)
	}
	if shown != "browser/demo: hello, browser" {
		t.Errorf("the page shows %q", shown)
	}
	for _, d := range artifactDirs(t) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(d, "browser-wss.png")
		if err := os.WriteFile(f, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", f)
	}
}
