//! The target URL and the one request every connection sends: parsed and serialized once at
//! startup into a byte buffer (head plus a body of the requested size) that connections write
//! as-is, so the request loop never formats anything.

use std::net::{SocketAddr, ToSocketAddrs};

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Resolved address (the first one the name resolves to).
    pub addr: SocketAddr,
    /// Value for the `Host` header (`host` or `host:port` as written in the URL).
    pub authority: String,
    /// Request target: path and query, at least `/`.
    pub path: String,
    /// `https://`: speak TLS.
    pub tls: bool,
    /// The host as written, without port or IPv6 brackets (the default TLS server name).
    pub host: String,
}

/// Parses `http[s]://HOST[:PORT][/PATH][?QUERY]` and resolves HOST (once, at startup).
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => {
            return Err(format!(
                "`{url}`: only http:// and https:// URLs are supported"
            ))
        }
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{url}`: missing or unsupported host"));
    }
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "`{url}`: the path must not contain spaces or control characters"
        ));
    }
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let host_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let host = match authority.rfind(':') {
        Some(i) if has_port => &authority[..i],
        _ => authority,
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    // Resolves names and parses IP literals, IPv6 in brackets included.
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("`{url}`: cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("`{url}`: the host resolves to no address"))?;
    Ok(Target {
        addr,
        authority: authority.to_string(),
        path,
        tls,
        host,
    })
}

/// Parses a `--header 'Name: value'` argument.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}`: expected `Name: value`"))?;
    let name = name.trim();
    let value = value.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(format!("the value of `{name}` contains control characters"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Serializes the request: request line, `Host` and `User-Agent` (unless given), the extra
/// headers, `Content-Length` when there is a body (or the method usually has one), then the
/// body (`body_size` bytes of `x`).
#[cfg(test)]
pub fn build_request(
    method: &str,
    target: &Target,
    headers: &[(String, String)],
    body_size: usize,
) -> Result<Vec<u8>, String> {
    build_request_with(method, target, headers, &vec![b'x'; body_size])
}

/// `build_request` with these body bytes.
pub fn build_request_with(
    method: &str,
    target: &Target,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let body_size = body.len();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
        return Err(format!(
            "`{method}` is not a valid method (use e.g. GET, POST)"
        ));
    }
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if has("content-length") || has("transfer-encoding") {
        return Err("set the request body with --body-size, not a framing header".into());
    }
    let mut out = Vec::with_capacity(256 + body_size);
    out.extend_from_slice(format!("{method} {} HTTP/1.1\r\n", target.path).as_bytes());
    if !has("host") {
        out.extend_from_slice(format!("Host: {}\r\n", target.authority).as_bytes());
    }
    if !has("user-agent") {
        out.extend_from_slice(b"User-Agent: rwload\r\n");
    }
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if body_size > 0 || matches!(method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {body_size}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:9000/a/b?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:9000");
        assert_eq!(t.path, "/a/b?x=1");
        let t = parse_url("http://127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.path, "/");
        let t = parse_url("http://127.0.0.1:81?q").unwrap();
        assert_eq!(t.path, "/?q");
        let t = parse_url("http://[::1]:8080/").unwrap();
        assert_eq!(t.addr, "[::1]:8080".parse().unwrap());
        let t = parse_url("http://localhost:7/").unwrap();
        assert_eq!(t.addr.port(), 7);
        let t = parse_url("https://localhost/x").unwrap();
        assert_eq!(
            (t.tls, t.addr.port(), t.host.as_str()),
            (true, 443, "localhost")
        );
        let t = parse_url("https://[::1]:8443").unwrap();
        assert_eq!((t.tls, t.addr.port(), t.host.as_str()), (true, 8443, "::1"));
        assert!(!parse_url("http://127.0.0.1:1/").unwrap().tls);
        assert!(parse_url("ftp://127.0.0.1/").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://127.0.0.1/a b").is_err());
        assert!(parse_url("http://127.0.0.1:99999/").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("X-Test:  yes "),
            Ok(("X-Test".to_string(), "yes".to_string()))
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("Bad Name: v").is_err());
        assert!(parse_header("X: a\nb").is_err());
    }

    #[test]
    fn request_bytes() {
        let t = parse_url("http://127.0.0.1:9000/p").unwrap();
        let j = crate::json_body::json_body(1024);
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert!(v["items"].as_array().unwrap().len() > 10);
        assert!((900..=1024).contains(&j.len()), "{}", j.len());
        let r = build_request("GET", &t, &[], 0).unwrap();
        assert_eq!(
            r,
            b"GET /p HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUser-Agent: rwload\r\n\r\n"
        );
        let hs = vec![("Host".to_string(), "api".to_string())];
        let r = build_request("POST", &t, &hs, 3).unwrap();
        assert_eq!(
            r,
            b"POST /p HTTP/1.1\r\nUser-Agent: rwload\r\nHost: api\r\nContent-Length: 3\r\n\r\nxxx"
        );
        let cl = vec![("Content-Length".to_string(), "3".to_string())];
        assert!(build_request("POST", &t, &cl, 0).is_err());
        assert!(build_request("get", &t, &[], 0).is_err());
    }
}
