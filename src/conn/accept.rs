//! An accepted socket's first steps: on a TLS listener, the handshake (bounded by the
//! listener's handshake timeout, on the worker that accepted it, counted by outcome), then the
//! HTTP/1.1 wire over the plain or TLS transport, or the HTTP/2 wire when ALPN chose `h2` or
//! an `h2c` listener sees the HTTP/2 preface.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::core::Core;
use crate::exchange::model::{ClientFacts, TlsFacts};
use crate::exchange::origin::Scheme;
use crate::metrics::CoreCounter;
use crate::tls::client_cert::PeerCert;
use crate::tls::poll::PollStream;
use crate::tls::settings::ListenerTls;
use crate::tls::stream::{HandshakeFail, TlsStream};
use crate::tls::transport::Transport;

/// What a listener socket was bound as at startup (its shape changes only on restart).
#[derive(Clone)]
pub struct ListenerCtx {
    pub addr: SocketAddr,
    /// The TLS settings it started with; reloads bring new certificates through the current
    /// generation, this is the fallback if a reload dropped its `tls` table.
    pub tls: Option<Arc<ListenerTls>>,
}

/// The client facts of a connection accepted on `l` when it is served as plain HTTP/1.1 from
/// its first byte (no TLS, no h2c sniff), decided without waiting; `None` when
/// `serve_accepted` must look at it first. The accept loop spawns such a connection's
/// `serve_connection` directly, so its long-lived task holds no room for the other paths.
pub fn plain_http1(core: &Core, peer: SocketAddr, l: &ListenerCtx) -> Option<ClientFacts> {
    if l.tls.is_some() {
        return None;
    }
    let gen = core.generation();
    let now = gen.cfg.listeners.iter().find(|x| x.addr == l.addr);
    let redirect_https = now.and_then(|x| x.redirect_https);
    if now.is_some_and(|x| x.h2c) && redirect_https.is_none() {
        return None;
    }
    let mut facts = ClientFacts::new(peer, Scheme::Http);
    facts.redirect_https = redirect_https;
    Some(facts)
}

/// Serves one accepted connection on `listener` until it closes.
pub async fn serve_accepted(core: Rc<Core>, stream: TcpStream, peer: SocketAddr, l: &ListenerCtx) {
    // What the current generation says about this listener (certificates, redirect, HTTP/2).
    let (now_tls, redirect_https, h2c, http2) = {
        let gen = core.generation();
        let now = gen.cfg.listeners.iter().find(|x| x.addr == l.addr);
        (
            now.and_then(|x| x.tls.clone()),
            now.and_then(|x| x.redirect_https),
            now.is_some_and(|x| x.h2c),
            // Only a connection that may speak HTTP/2 takes the (shared) settings: a plain
            // HTTP/1.1 accept touches no reference count other cores also write.
            now.filter(|x| x.h2c || x.tls.is_some())
                .map_or_else(Default::default, |x| x.http2.clone()),
        )
    };
    let Some(start_tls) = &l.tls else {
        let mut facts = ClientFacts::new(peer, Scheme::Http);
        facts.redirect_https = redirect_https;
        // The sniff is boxed: its timers would otherwise stay in this task's storage for the
        // connection's life.
        if h2c && redirect_https.is_none() && Box::pin(sniff_h2c(&core, &stream)).await {
            if let Ok(io) = PollStream::plain(stream) {
                Box::pin(crate::http2::server::serve(core, io, facts, http2)).await;
            }
            return;
        }
        return super::http1::serve_connection(core, Transport::Plain(stream), facts, ()).await;
    };
    // Boxed: this task lives as long as the connection, and a parked plain HTTP/1.1
    // connection should not carry the room the TLS handshake and HTTP/2 states need.
    Box::pin(serve_tls(core, stream, peer, l, start_tls, now_tls, http2)).await;
}

/// The TLS listener's part of `serve_accepted`: handshake, then HTTP/1.1 or HTTP/2.
async fn serve_tls(
    core: Rc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    l: &ListenerCtx,
    start_tls: &Arc<ListenerTls>,
    now_tls: Option<Arc<ListenerTls>>,
    http2: Arc<crate::config::http2::Http2Settings>,
) {
    let settings = now_tls.unwrap_or_else(|| start_tls.clone());
    let config = core.tls.server_config(l.addr, &settings);
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = Box::new(TlsStream::new(stream, conn));
    let done = monoio::time::timeout(settings.handshake_timeout, tls.handshake()).await;
    let failed = match done {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(_) => Some(HandshakeFail::Timeout),
    };
    if let Some(why) = failed {
        core.telemetry.count(fail_counter(why));
        if why == HandshakeFail::PlainHttp {
            return super::http1::refuse_plain_http(&core, tls.into_tcp(), peer).await;
        }
        // Nothing useful can follow; a reset leaves no TIME_WAIT behind for scanners.
        crate::io::reset_on_close(tls.tcp().as_raw_fd());
        return;
    }
    let conn = tls.conn();
    core.telemetry.count(match conn.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => CoreCounter::TlsResumed,
        _ => CoreCounter::TlsFull,
    });
    let mut facts = ClientFacts::new(peer, Scheme::Https);
    facts.tls = Some(Rc::new(tls_facts(conn, &settings)));
    if conn.alpn_protocol() == Some(b"h2") {
        if let Ok(io) = PollStream::from_transport(Transport::Tls(tls)) {
            crate::http2::server::serve(core, io, facts, http2).await;
        }
        return;
    }
    super::http1::serve_connection(core, Transport::Tls(tls), facts, ()).await;
}

/// Whether a plain connection opens with the HTTP/2 client preface (h2c with prior
/// knowledge). Only peeks, so an HTTP/1.1 connection starts from its first byte; bounded by
/// the header timeout (a silent client is then the HTTP/1.1 wire's to time out).
///
/// Three bytes decide: `PRI` is no method an HTTP/1.1 client sends (POST, PUT, PATCH and
/// PROPFIND differ by then), and the h2 handshake checks the rest of the preface itself. A
/// client that dribbles fewer bytes is looked at again with growing pauses, so it cannot make
/// the worker spin.
async fn sniff_h2c(core: &Core, tcp: &TcpStream) -> bool {
    use crate::h2flood::PREFACE;
    const DECIDES: usize = 3;
    let deadline = Instant::now() + core.generation().cfg.timeouts.client_header;
    let mut first = [0u8; DECIDES];
    let mut pause = Duration::from_millis(1);
    loop {
        // SAFETY: recv writes at most `first.len()` bytes into the local array; MSG_PEEK
        // leaves them in the socket for whichever wire takes the connection.
        let n = unsafe {
            libc::recv(
                tcp.as_raw_fd(),
                first.as_mut_ptr().cast(),
                first.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => return false,
            1.. => {
                let seen = &first[..n as usize];
                if !PREFACE.starts_with(seen) {
                    return false;
                }
                if seen.len() == DECIDES {
                    return true;
                }
                // Part of the method token: wait a little longer each time.
                monoio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::Interrupted
                {
                    return false;
                }
                let readable = tcp.readable(false);
                if monoio::time::timeout_at(deadline.into(), readable)
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// What the handshake established, kept for the connection's life.
fn tls_facts(conn: &rustls::Connection, settings: &ListenerTls) -> TlsFacts {
    TlsFacts {
        security: Some(settings.security.clone()),
        // Present only when the listener's verifier accepted it.
        peer_cert: conn.peer_certificates().and_then(PeerCert::from_chain),
        // Kept only for the host check (`strict_host`): nothing else reads it.
        sni: match conn {
            rustls::Connection::Server(s) if settings.authority.is_some() => {
                s.server_name().map(|n| n.to_ascii_lowercase().into())
            }
            _ => None,
        },
        authority: settings.authority.clone(),
    }
}

fn fail_counter(why: HandshakeFail) -> CoreCounter {
    match why {
        HandshakeFail::Timeout => CoreCounter::TlsFailTimeout,
        HandshakeFail::Eof => CoreCounter::TlsFailEof,
        HandshakeFail::Io => CoreCounter::TlsFailIo,
        HandshakeFail::Incompatible => CoreCounter::TlsFailIncompatible,
        HandshakeFail::UnknownName => CoreCounter::TlsFailUnknownName,
        HandshakeFail::ClientCert => CoreCounter::TlsFailClientCert,
        HandshakeFail::Alert => CoreCounter::TlsFailAlert,
        HandshakeFail::Protocol => CoreCounter::TlsFailProtocol,
        HandshakeFail::PlainHttp => CoreCounter::TlsFailPlainHttp,
    }
}
