//! The webhook target parser and SSRF guard (crates/zib-server/src/domain/ssrf.rs)
//! and the secret check (webhook_targets.rs). Host names are never resolved here
//! (that would send DNS queries): names stop at the shape check; IP literals go
//! through the whole `check_url`.
//!
//! Properties: no panic; the address checked is the address the URL names (an IP
//! host is always seen as a literal, a name never is); the stored form of an
//! accepted URL parses back to the same target; an accepted public URL never names
//! a forbidden address, in any IPv4 or IPv6 spelling; an IPv6 address that embeds an
//! IPv4 one is judged like it.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use url::Host;
use zib_server::domain::ssrf::{check_url, forbidden_reason, parse_url};
use zib_server::domain::webhook_targets::check_secret;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn addresses(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&data[..16]);
    let v6 = Ipv6Addr::from(b);
    let v4 = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
    let v4_verdict = forbidden_reason(IpAddr::V4(v4)).is_some();
    assert_eq!(
        forbidden_reason(IpAddr::V6(v4.to_ipv6_mapped())).is_some(),
        v4_verdict,
        "{v4} mapped"
    );
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    let nat64 = Ipv6Addr::from((u128::from(0x0064_ff9b_u32) << 96) | u128::from(u32::from(v4)));
    if v4_verdict {
        assert!(forbidden_reason(IpAddr::V6(nat64)).is_some(), "{nat64}");
    }
    let _ = forbidden_reason(IpAddr::V6(v6));
}

fn url(raw: &str) {
    let Ok(target) = parse_url(raw) else {
        return;
    };
    match target.url.host() {
        Some(Host::Ipv4(a)) => assert_eq!(target.literal, Some(IpAddr::V4(a)), "{raw:?}"),
        Some(Host::Ipv6(a)) => assert_eq!(target.literal, Some(IpAddr::V6(a)), "{raw:?}"),
        Some(Host::Domain(d)) => {
            assert!(target.literal.is_none(), "{raw:?}");
            assert!(d.parse::<IpAddr>().is_err(), "{raw:?}: {d:?} is an address");
        }
        None => panic!("{raw:?} accepted without a host"),
    }
    // What is stored is parsed again when an event is sent.
    let stored = target.url.to_string();
    let again = parse_url(&stored).expect("a stored target parses again");
    assert_eq!(again.url, target.url);
    assert_eq!(again.literal, target.literal);
    assert_eq!(again.port, target.port);

    if let Some(ip) = target.literal {
        let checked = rt().block_on(check_url(raw, false));
        assert_eq!(checked.is_ok(), forbidden_reason(ip).is_none(), "{raw:?}");
        if let Ok(u) = checked {
            assert_eq!(u, target.url);
        }
        assert!(rt().block_on(check_url(raw, true)).is_ok());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => addresses(rest),
        1 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                url(s);
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(rest) {
                if check_secret("secret", s).is_ok() {
                    assert!((16..=256).contains(&s.chars().count()));
                    assert!(!s.chars().any(char::is_control));
                }
            }
        }
    }
});
