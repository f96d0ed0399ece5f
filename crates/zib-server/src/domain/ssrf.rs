//! The SSRF guard: a webhook makes the server send requests where a tenant says, so
//! targets must be public. Checked when a URL is configured (a clear 400) and again
//! before every send (DNS may have changed since), unless the operator allows
//! private targets (`zib dev` does, so receivers on loopback work).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// Why an address may not be a webhook target, or `None` if it is public.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => {
            "a link-local address (the cloud metadata service)"
        }
        (0, _, _) => "an unspecified (\"this network\") address",
        (127, _, _) => "a loopback address",
        (10, _, _) => "a private address (10.0.0.0/8)",
        (172, 16..=31, _) => "a private address (172.16.0.0/12)",
        (192, 168, _) => "a private address (192.168.0.0/16)",
        (169, 254, _) => "a link-local address (169.254.0.0/16)",
        (100, 64..=127, _) => "a shared carrier-grade NAT address (100.64.0.0/10)",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        (192, 0, 0) => "a reserved IETF protocol address (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address (198.18.0.0/15)",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some("an unspecified address (::)");
    }
    if ip.is_loopback() {
        return Some("a loopback address (::1)");
    }
    // Embedded IPv4: judged by the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) ::a.b.c.d
        return v4_reason(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ))
        .or(Some("a reserved IPv6 address (::/96)"));
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        return v4_reason(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    if seg[0] == 0x2002 {
        return v4_reason(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    Some(match seg[0] {
        s if s & 0xfe00 == 0xfc00 => "a unique local (private) address (fc00::/7)",
        s if s & 0xffc0 == 0xfe80 => "a link-local address (fe80::/10)",
        s if s & 0xffc0 == 0xfec0 => "a site-local address (fec0::/10)",
        s if s & 0xff00 == 0xff00 => "a multicast address (ff00::/8)",
        0x2001 if seg[1] == 0x0db8 => "a documentation address (2001:db8::/32)",
        _ => return None,
    })
}

/// A target URL of the right shape (http or https, a host), before any lookup.
#[derive(Debug)]
pub struct ParsedTarget {
    pub url: Url,
    /// The host as written in the URL (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    /// The address, when the host is an IP literal (no lookup needed).
    pub literal: Option<IpAddr>,
}

/// The shape checks of [`check_url`], without resolving anything (what the fuzzer
/// drives: it must never send a DNS query).
pub fn parse_url(raw: &str) -> Result<ParsedTarget, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{raw:?} uses the scheme {:?}: only http and https webhook URLs are allowed",
            url.scheme()
        ));
    }
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => return Err(format!("{raw:?} has no host")),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    Ok(ParsedTarget {
        url,
        host,
        port,
        literal,
    })
}

/// Checks a target URL: http(s) only, and (unless `allow_private`) every address its
/// host resolves to must be public. The error is a sentence for the tenant.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<Url, String> {
    let ParsedTarget {
        url,
        host,
        port,
        literal,
    } = parse_url(raw)?;
    let addrs: Vec<IpAddr> = match literal {
        Some(ip) => vec![ip],
        None => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("the host {host:?} of {raw:?} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("the host of {raw:?} resolves to no address"));
    }
    if allow_private {
        return Ok(url);
    }
    for ip in addrs {
        if let Some(reason) = forbidden_reason(ip) {
            return Err(format!(
                "{raw:?} resolves to {ip}, {reason}: webhook targets must be public addresses \
                 (an operator can allow private targets with allow_private_webhook_targets)"
            ));
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(s: &str) -> bool {
        forbidden_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn private_loopback_link_local_and_friends_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(bad(ip), "{ip} should be refused");
        }
        assert!(forbidden_reason("169.254.169.254".parse().unwrap())
            .unwrap()
            .contains("metadata"));
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!bad(ip), "{ip} should be allowed");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_scheme_and_resolved_address() {
        let err = check_url("http://169.254.169.254/latest/meta-data", false)
            .await
            .unwrap_err();
        assert!(err.contains("metadata"), "{err}");
        let err = check_url("http://10.0.0.1/hook", false).await.unwrap_err();
        assert!(err.contains("private"), "{err}");
        let err = check_url("http://localhost:9/hook", false)
            .await
            .unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        let err = check_url("ftp://example.com/x", false).await.unwrap_err();
        assert!(err.contains("only http and https"), "{err}");
        assert!(check_url("http://[::ffff:7f00:1]/", false).await.is_err());
        assert!(check_url("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check_url("https://8.8.8.8/hook", false).await.is_ok());
    }
}
