package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// statusXSS is a user name a device may send; the page must show it as
// text.
const statusXSS = `<img src=x onerror=alert(1)>`

// TestStatusPageInBrowser: the proxy as serve runs it (Start, with a real
// redis-server and mosquitto) with STATUS=true and a token; two live
// sessions (the second on a resumed TLS session) and three refused
// CONNECTs (a wrong password, an unknown user whose name is markup, a
// client id not allowed). Debian's chromium, headless, opens /status?token=
// and the test waits until the DOM shows the live sessions, the refusals
// with their reasons and the user name as text; it checks the summary line
// (sessions, accepted and refused, resumption rate, health dots), that no
// element came from the user name and no dialog opened, that the decisions
// are newest first, and that the user filter narrows the lists; no console
// error or exception occurred. It saves a full-page screenshot (status.png,
// in a temporary directory and in /tmp/authproxy-artifacts). Without the
// token, /status and /status.json answer 401 (on a loopback listener too:
// a token that is set is always required).
func TestStatusPageInBrowser(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	redis := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f := testFiles(t)
	const token = "status-page-test-token-0123"
	c := Defaults()
	c.Listen, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	c.TLSCertFile, c.TLSKeyFile = f.ServerCert, f.ServerKey
	c.RedisURL, c.BackendAddr, c.ShutdownGrace = testenv.RedisURL(redis), broker.Addr(), time.Second
	c.Status, c.AdminToken = true, token
	logs := &testenv.SyncBuffer{}
	a := startApp(t, c, logs)
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	admin := "http://" + a.Addrs().Admin.String()

	// Without the token: 401, for the page and its data.
	for _, target := range []string{"/status", "/status.json", "/status?token=wrong-token-0123456789"} {
		if code, body := get(t, admin+target); code != http.StatusUnauthorized || strings.Contains(body, "<script>") {
			t.Fatalf("%s without the token: %d %q", target, code, body)
		}
	}

	ctx := context.Background()
	password := "sensor-1-password"
	own := []string{"devices/%u/#"}
	if err := a.Store().SetUser(ctx, "sensor-1", operator.Update{Password: &password, Publish: &own, Subscribe: &own}); err != nil {
		t.Fatal(err)
	}
	// The change feed is subscribed: a kick reaches this proxy (and is its
	// last change notification).
	testenv.WaitFor(t, 5*time.Second, "the change feed to subscribe", func() bool {
		n, err := a.Store().Kick(ctx, "nobody")
		return err == nil && n > 0
	})

	ca, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cache := tls.NewLRUClientSessionCache(4)
	connect := func(level packets.Level, clientID, user, pass string, cache tls.ClientSessionCache) (*mqtttest.Client, *tls.Conn, byte) {
		t.Helper()
		tc, err := tls.Dial("tcp", a.Addrs().TLS.String(), &tls.Config{RootCAs: pool, ServerName: "localhost", ClientSessionCache: cache})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		cl, ack, err := mqtttest.Connect(tc, mqtttest.Creds(level, clientID, user, pass))
		if err != nil {
			t.Fatalf("CONNECT %s/%s: %v", user, clientID, err)
		}
		return cl, tc, ack.Code
	}
	// A live session with traffic both ways, then one on a resumed TLS session.
	first, _, code := connect(packets.V311, "sensor-1:a", "sensor-1", password, cache)
	if code != 0 {
		t.Fatalf("sensor-1:a: CONNACK 0x%02X", code)
	}
	if err := first.Subscribe("devices/sensor-1/#", 1); err != nil {
		t.Fatal(err)
	}
	if err := first.Publish("devices/sensor-1/temp", []byte(`{"celsius":21.5}`), 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := first.ReadPublish(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	_, tc, code := connect(packets.V5, "sensor-1:b", "sensor-1", password, cache)
	if code != 0 || !tc.ConnectionState().DidResume {
		t.Fatalf("sensor-1:b: CONNACK 0x%02X, resumed %v", code, tc.ConnectionState().DidResume)
	}
	// Three refusals, each on a full handshake.
	for _, r := range []struct {
		clientID, user, pass string
		want                 byte
	}{{"sensor-1-c", "sensor-1", "wrong-password", 0x04}, {"x", statusXSS, "whatever", 0x04}, {"sensor-9", "sensor-1", password, 0x02}} {
		if _, _, code := connect(packets.V311, r.clientID, r.user, r.pass, nil); code != r.want {
			t.Fatalf("%s/%s: CONNACK 0x%02X, want 0x%02X", r.user, r.clientID, code, r.want)
		}
	}

	bctx := startChromium(t, chromium)
	problems := watchConsole(t, bctx)
	if err := chromedp.Do(bctx, chromedp.Navigate(admin+"/status?token="+token)); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`(() => {
		const s = document.querySelector('#sessions tbody').textContent;
		const d = document.querySelector('#decisions tbody').textContent;
		return s.includes('sensor-1:a') && s.includes('sensor-1:b') && d.includes('password does not match') &&
			d.includes('unknown user') && d.includes('<img src=x onerror=alert(1)>') && d.includes('sensor-9');
	})()`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the page did not show the sessions and the refusals: %v", err)
	}

	type shown struct {
		Sessions, Accepted, Refused, Resumed, Redis, Backend, Feed string
		SessionRows, DecisionRows, Images                          int
		NewestFirst, NameAsText, ResumedTag                        bool
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[shown](`(() => {
		const text = id => document.getElementById(id).textContent;
		const times = [...document.querySelectorAll('#decisions tbody td.time')].map(td => Date.parse(td.title));
		return {
			Sessions: text('k-sessions'), Accepted: text('k-accepted'), Refused: text('k-refused'), Resumed: text('k-resumed'),
			Redis: document.getElementById('d-redis').className, Backend: document.getElementById('d-backend').className,
			Feed: text('t-feed'),
			SessionRows: document.querySelectorAll('#sessions tbody tr').length,
			DecisionRows: document.querySelectorAll('#decisions tbody tr').length,
			Images: document.querySelectorAll('img').length,
			NewestFirst: times.length > 1 && times.every((t, i) => i === 0 || t <= times[i - 1]),
			NameAsText: [...document.querySelectorAll('#decisions td')].some(td => td.textContent === '<img src=x onerror=alert(1)>'),
			ResumedTag: [...document.querySelectorAll('#sessions tbody tr')].some(tr => tr.textContent.includes('sensor-1:b') && tr.querySelector('.tag')),
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	want := shown{Sessions: "2", Accepted: "2", Refused: "3", Resumed: "20 %", Redis: "dot ok", Backend: "dot ok",
		SessionRows: 2, DecisionRows: 5, Images: 0, NewestFirst: true, NameAsText: true, ResumedTag: true}
	want.Feed = got.Feed // checked below
	if got != want || !strings.HasPrefix(got.Feed, "last notification ") {
		t.Errorf("the page shows\n%+v\nwant\n%+v (feed: last notification ...)", got, want)
	}

	screenshot(t, bctx, "status.png")
	// And in the dark colour scheme (what a browser set to dark shows).
	if _, err := chromedp.Call(bctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	screenshot(t, bctx, "status-dark.png")

	// The user filter: typed in the page, it goes to /status.json?user=
	// and narrows both lists; the address bar keeps it for a reload.
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.ID("user"), statusXSS)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`(() => {
		const rows = [...document.querySelectorAll('#decisions tbody tr')];
		return rows.length === 1 && rows[0].textContent.includes('unknown user') &&
			document.querySelectorAll('#sessions tbody tr').length === 0 && !document.getElementById('s-empty').hidden &&
			new URLSearchParams(location.search).get('user') === '<img src=x onerror=alert(1)>' &&
			new URLSearchParams(location.search).get('token') !== null;
	})()`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the user filter did not narrow the lists: %v", err)
	}
	if msgs := problems(); len(msgs) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(msgs, "\n"))
	}
}

// screenshot saves a full-page PNG of the tab as name, in a temporary
// directory of the test and in /tmp/authproxy-artifacts.
func screenshot(t *testing.T, bctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{t.TempDir(), filepath.Join(os.TempDir(), "authproxy-artifacts")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", filepath.Join(dir, name))
	}
}

// startChromium starts Debian's chromium, headless, with a fresh profile,
// and returns a tab's context; it ends with the test.
func startChromium(t *testing.T, chromium string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil { // starts the browser and the tab
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// watchConsole collects, from now on, the console errors and warnings,
// uncaught exceptions, browser log errors (a CSP violation, a failed
// request) and dialogs of the tab. The returned func waits until every
// message the page wrote before it was called has been seen, and returns
// the problems.
func watchConsole(t *testing.T, bctx context.Context) func() []string {
	t.Helper()
	var mu sync.Mutex
	var problems []string
	marks := make(chan string, 16)
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch {
			case m.Type == chromedp.ConsoleLog && strings.HasPrefix(m.Text, "status-test-mark-"):
				marks <- m.Text
			case m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException():
				mu.Lock()
				problems = append(problems, m.String()+" at "+m.URL)
				mu.Unlock()
			}
		}
	}()
	dialogs := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			mu.Lock()
			problems = append(problems, "a dialog opened: "+ev.Message)
			mu.Unlock()
			_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return func() []string {
		t.Helper()
		// The console keeps the order of the messages: once the mark is
		// seen, so is everything before it.
		const mark = "status-test-mark-end"
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`console.log('`+mark+`'), true`)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-marks:
		case <-bctx.Done():
			t.Fatal("the console mark never arrived")
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}
