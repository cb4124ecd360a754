//! Which URLs may receive events: https only and public addresses only, unless the settings allow
//! plain http or private targets. Checked at subscription, and again at delivery after DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, Default)]
pub struct TargetPolicy {
    pub allow_http: bool,
    pub allow_private: bool,
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// Loopback, private, link-local and other non-public addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

const ALLOW_HTTP: &str = "--webhook-allow-http (CA_CONNECTOR_WEBHOOK_ALLOW_HTTP)";
const ALLOW_PRIVATE: &str = "--webhook-allow-private (CA_CONNECTOR_WEBHOOK_ALLOW_PRIVATE)";

/// Checks a URL as given: scheme, host, and hosts that are private by name or literal address.
/// Every problem is reported at once, each naming the setting that would allow it where one does,
/// so a person fixes the URL (or the settings) in one go.
pub fn check_url_problems(raw: &str, policy: TargetPolicy) -> Result<url::Url, Vec<String>> {
    let url = url::Url::parse(raw)
        .map_err(|_| vec!["is not an absolute URL (write it as https://host/path)".to_string()])?;
    let mut problems = Vec::new();
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => problems.push(format!(
            "uses plain http, which the settings refuse: use https, or allow http targets with {ALLOW_HTTP}"
        )),
        other => problems.push(format!("uses '{other}': it must be an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        problems.push("carries a user name or password: remove them (deliveries are authenticated by their signature)".into());
    }
    let private = match url.host() {
        None => {
            problems.push("names no host".into());
            false
        }
        Some(url::Host::Ipv4(ip)) => is_private(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_private(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || d.ends_with(".internal")
        }
    };
    if private && !policy.allow_private {
        problems.push(format!(
            "points at a loopback or private host ({}), which the settings refuse: use a public address, or allow such targets with {ALLOW_PRIVATE}",
            url.host_str().unwrap_or_default()
        ));
    }
    if problems.is_empty() {
        Ok(url)
    } else {
        Err(problems)
    }
}

/// `check_url_problems` with its problems in one sentence, for delivery records.
pub fn check_url(raw: &str, policy: TargetPolicy) -> Result<url::Url, String> {
    check_url_problems(raw, policy).map_err(|p| p.join("; "))
}

/// Resolves the host and refuses the delivery when any address is private (a public name may
/// point at a private address).
pub async fn check_resolved(url: &url::Url, policy: TargetPolicy) -> Result<(), String> {
    if policy.allow_private {
        return Ok(());
    }
    let host = url
        .host_str()
        .ok_or("no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("DNS lookup failed: {e}"))?;
    for addr in addrs {
        if is_private(addr.ip()) {
            return Err(format!(
                "target resolves to a non-public address ({})",
                addr.ip()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_private_and_plain_targets_unless_allowed() {
        let strict = TargetPolicy::default();
        assert!(check_url("https://erp.example/ca-events", strict).is_ok());
        for bad in [
            "http://erp.example/x",
            "ftp://erp.example/",
            "https://127.0.0.1/x",
            "https://10.1.2.3/",
            "https://192.168.0.9/",
            "https://172.20.0.1/",
            "https://169.254.169.254/latest",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://localhost/",
            "https://api.localhost/",
            "https://user:pw@erp.example/",
            "not a url",
            "https://100.64.0.1/",
        ] {
            assert!(check_url(bad, strict).is_err(), "{bad}");
        }
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        assert!(check_url("http://127.0.0.1:8080/hook", open).is_ok());
        assert!(check_url(
            "http://127.0.0.1:8080/hook",
            TargetPolicy {
                allow_http: true,
                allow_private: false
            }
        )
        .is_err());
    }

    #[test]
    fn every_problem_is_named_with_the_setting_that_allows_it() {
        let problems =
            check_url_problems("http://user:pw@127.0.0.1/x", TargetPolicy::default()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("--webhook-allow-http"), "{problems:?}");
        assert!(problems[1].contains("user name"), "{problems:?}");
        assert!(
            problems[2].contains("--webhook-allow-private") && problems[2].contains("127.0.0.1"),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn resolution_is_checked_at_delivery() {
        let url = url::Url::parse("https://localhost.:9/").unwrap();
        assert!(
            check_resolved(&url, TargetPolicy::default()).await.is_err(),
            "localhost resolves to loopback"
        );
        assert!(check_resolved(
            &url,
            TargetPolicy {
                allow_http: false,
                allow_private: true
            }
        )
        .await
        .is_ok());
    }
}
