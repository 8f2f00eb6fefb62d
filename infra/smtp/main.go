// Local SMTP sink: accepts every message and keeps it as one .eml file in a folder, so
// that tests (and people) can read what the notifications service really sent.
//
// go-smtp does the SMTP (PIPELINING, 8BITMIME, SMTPUTF8); this file only chooses where
// messages land, and reads three switch files that tests drop in the folder:
//
//	.fail        present: DATA is answered 451 (tests of retries)
//	.fail-rcpt   one address per line: refused 451 at RCPT (per-message retries)
//	.bounce-rcpt one address per line: refused 550 at RCPT (permanent failures)
//
// It replaces an aiosmtpd sink that took a seventh of the machine in `make bench`: the
// sink is part of the stack on this one box, so its CPU is the system's too.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

type sink struct{ folder string }

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{sink: s}, nil }

type session struct{ sink *sink }

func (*session) Reset()                               {}
func (*session) Logout() error                        { return nil }
func (*session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if listed(filepath.Join(s.sink.folder, ".fail-rcpt"), to) {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox temporarily unavailable"}
	}
	if listed(filepath.Join(s.sink.folder, ".bounce-rcpt"), to) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	}
	return nil
}

func (s *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r) // consumed in full before any answer, as SMTP needs
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(s.sink.folder, ".fail")); err == nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink told to fail"}
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	name := strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + hex.EncodeToString(id[:]) + ".eml"
	tmp := filepath.Join(s.sink.folder, "."+name+".tmp")
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.sink.folder, name)) // a reader never sees half a message
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
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 11025, "port to listen on")
	folder := flag.String("maildir", "", "folder the .eml files go to")
	flag.Parse()
	if *folder == "" {
		log.Fatal("-maildir is required")
	}
	if err := os.MkdirAll(*folder, 0o755); err != nil {
		log.Fatal(err)
	}
	server := smtp.NewServer(&sink{folder: *folder})
	server.Addr = net.JoinHostPort(*host, strconv.Itoa(*port))
	server.Domain = "paysys-sink.local"
	server.MaxMessageBytes = 32 << 20
	server.ReadTimeout = 5 * time.Minute
	server.WriteTimeout = 5 * time.Minute
	server.EnableSMTPUTF8 = true

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(shutdown)
	}()
	fmt.Fprintf(os.Stderr, "smtp sink on %s, messages into %s\n", server.Addr, *folder)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		log.Fatal(err)
	}
}
