// A test-only SMTP relay in front of Mailpit that fails on demand. The test stack's
// services send through it; what it accepts goes on to Mailpit, where the tests read it.
//
// Mailpit's own chaos triggers fail every recipient with a given probability; the tests
// need one recipient refused while the next is delivered in the same pipelined batch, so
// this relay reads three switch files that tests drop in its control folder:
//
//	.fail        present: DATA is answered 451 (tests of retries)
//	.fail-rcpt   one address per line: refused 451 at RCPT (per-message retries)
//	.bounce-rcpt one address per line: refused 550 at RCPT (permanent failures)
//	.slow        seconds: the answer to a message's text waits that long after the
//	             message went on to Mailpit (a server slow to accept: it has it)
//
// go-smtp does the SMTP on both sides (PIPELINING, 8BITMIME, SMTPUTF8); Mailpit's answer
// to the relayed message is the answer the sender gets.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

type relay struct{ control, upstream string }

func (r *relay) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{relay: r}, nil }

type session struct {
	relay *relay
	from  string
	to    []string
}

func (s *session) Reset()      { s.from, s.to = "", nil }
func (*session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if listed(filepath.Join(s.relay.control, ".fail-rcpt"), to) {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox temporarily unavailable"}
	}
	if listed(filepath.Join(s.relay.control, ".bounce-rcpt"), to) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r) // consumed in full before any answer, as SMTP needs
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.relay.control, ".fail")); err == nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "relay told to fail"}
	}
	// Plain SMTP to Mailpit on loopback (smtp.SendMail would insist on STARTTLS).
	c, err := smtp.Dial(s.relay.upstream)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(s.from, s.to, bytes.NewReader(body)); err != nil {
		return err
	}
	if text, err := os.ReadFile(filepath.Join(s.relay.control, ".slow")); err == nil {
		if seconds, err := strconv.ParseFloat(strings.TrimSpace(string(text)), 64); err == nil {
			time.Sleep(time.Duration(seconds * float64(time.Second)))
		}
	}
	return c.Quit()
}

// listed: whether address is one of the whitespace-separated words of file (absent: no).
func listed(file, address string) bool {
	text, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, word := range strings.Fields(string(text)) {
		if word == address {
			return true
		}
	}
	return false
}

func main() {
	port := flag.Int("port", 0, "port to listen on (127.0.0.1)")
	control := flag.String("control", "", "folder of the switch files")
	upstream := flag.String("upstream", "", "host:port of the SMTP server to relay to (Mailpit)")
	certFile := flag.String("tls-cert", "", "with -tls-key: offer STARTTLS with this certificate")
	keyFile := flag.String("tls-key", "", "the certificate's key")
	flag.Parse()
	if *control == "" || *upstream == "" || *port == 0 {
		log.Fatal("-port, -control and -upstream are required")
	}
	if err := os.MkdirAll(*control, 0o755); err != nil {
		log.Fatal(err)
	}
	server := smtp.NewServer(&relay{control: *control, upstream: *upstream})
	server.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	server.Domain = "paysys-test-relay.local"
	server.MaxMessageBytes = 32 << 20
	server.ReadTimeout = 5 * time.Minute
	server.WriteTimeout = 5 * time.Minute
	server.EnableSMTPUTF8 = true
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		server.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	fmt.Fprintf(os.Stderr, "test SMTP relay on %s, to %s, switches in %s\n", server.Addr, *upstream, *control)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		log.Fatal(err)
	}
}
