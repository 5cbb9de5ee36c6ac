package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// CallbackPolicy decides where results may be PUT. Judge0's CVE-2024-29021
// was exactly a callback to an internal address: by default loopback,
// private, link-local, multicast and unspecified addresses are refused, at
// submission and again at connection time (so a name that resolves to a
// public address first and a private one later gains nothing).
type CallbackPolicy struct {
	// AllowPrivate lets callbacks reach loopback and private networks
	// (tests, or a judge whose front end runs next to microbox).
	AllowPrivate bool
	// Tries and Timeout bound delivery; zero means 3 tries, 5 s each.
	Tries   int
	Timeout time.Duration
}

var errCallbackTarget = errors.New("callback_url points to a loopback, private, link-local or otherwise internal address")

func (p CallbackPolicy) allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if p.AllowPrivate {
		return !ip.IsUnspecified() && !ip.IsMulticast()
	}
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast()
}

// check validates a callback URL at submission time.
func (p CallbackPolicy) check(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an http or https URL")
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil || len(ips) == 0 {
		return fmt.Errorf("host %q does not resolve", u.Hostname())
	}
	for _, ip := range ips {
		if !p.allowed(ip) {
			return errCallbackTarget
		}
	}
	return nil
}

// client dials only addresses the policy allows, checked on the address
// actually connected to.
func (p CallbackPolicy) client() *http.Client {
	timeout := p.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	d := &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !p.allowed(ap.Addr()) {
			return errCallbackTarget
		}
		return nil
	}}
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil},
		// A redirect could lead anywhere: do not follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// deliver PUTs body to u, retrying with a growing pause; it reports the
// last error if every try failed.
func (p CallbackPolicy) deliver(ctx context.Context, u string, body []byte, log *slog.Logger) error {
	tries := p.Tries
	if tries == 0 {
		tries = 3
	}
	c := p.client()
	var last error
	for i := 0; i < tries; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(i) * time.Second):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
			err = fmt.Errorf("callback answered %s", resp.Status)
		}
		last = err
		log.Warn("callback failed", "url", u, "try", i+1, "err", err)
	}
	return last
}
