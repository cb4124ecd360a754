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
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        || s[..6] == [0; 6] // IPv4-compatible ::/96
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] && private_v4(embedded_v4(s[6], s[7]))) // NAT64
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001) // local-use NAT64 (RFC 8215), any embedding
        || (s[0] == 0x2002 && private_v4(embedded_v4(s[1], s[2]))) // 6to4
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
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
            // "localhost." is the same name as "localhost" to a resolver.
            let d = d.trim_end_matches('.').to_ascii_lowercase();
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

/// Why a delivery was refused after DNS: said without the address, which web-hook managers must
/// not learn (it would map the internal network for them).
#[derive(Debug)]
pub struct NonPublicTarget;

impl std::fmt::Display for NonPublicTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the target's name resolves to a non-public address")
    }
}

impl std::error::Error for NonPublicTarget {}

/// The resolver of the delivery client: the system's, keeping the answer only when every address
/// is public (unless private targets are allowed). The addresses checked are the ones the request
/// then connects to — no second lookup a rebinding name could answer differently — and the lookup
/// runs inside the attempt's deadline.
pub struct TargetResolver {
    pub policy: TargetPolicy,
    pub pinned: Pinned,
}

/// Host names an operator pinned to addresses (`--webhook-resolve`), looked up before DNS: for a
/// name this network's DNS does not answer. The address check applies to them all the same.
pub type Pinned = std::sync::Arc<std::collections::HashMap<String, Vec<IpAddr>>>;

impl reqwest::dns::Resolve for TargetResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.policy.allow_private;
        let host = name.as_str().to_ascii_lowercase();
        let pinned = self.pinned.get(&host).cloned();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = match pinned {
                Some(ips) => ips.into_iter().map(|ip| (ip, 0).into()).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            if !allow_private && addrs.iter().any(|a| is_private(a.ip())) {
                return Err(Box::new(NonPublicTarget) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub fn delivery_client(
    policy: TargetPolicy,
    pinned: Pinned,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(TargetResolver { policy, pinned }))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("ca-connector-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// Whether an error (or any error behind it) is the resolver's refusal. By type where the chain
/// shows it, else by its name in the chain's debug form: the HTTP stack hands it on inside an
/// `io::Error`, whose `source()` skips the error it wraps.
pub fn refused_by_resolver(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<NonPublicTarget>() {
            return true;
        }
        current = e.source();
    }
    format!("{error:?}").contains("NonPublicTarget")
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
            "https://192.0.0.8/",
            "https://[::10.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::]/",
            "https://[2001:0:4136:e378::1]/",
            "https://[fec0::1]/",
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
    async fn the_resolver_refuses_names_of_private_addresses_without_naming_them() {
        use reqwest::dns::Resolve;
        let strict = TargetResolver {
            policy: TargetPolicy::default(),
            pinned: Pinned::default(),
        };
        // The resolver judges addresses, not names: "localhost" passes it to the lookup.
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let err = strict.resolve(name()).await.err().expect("refused");
        assert!(refused_by_resolver(err.as_ref()));
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
        let open = TargetResolver {
            policy: TargetPolicy {
                allow_http: false,
                allow_private: true,
            },
            pinned: Pinned::default(),
        };
        let addrs: Vec<_> = open.resolve(name()).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn a_trailing_dot_does_not_hide_a_private_name() {
        let strict = TargetPolicy::default();
        for bad in [
            "https://localhost./x",
            "https://erp.local./x",
            "https://LOCALHOST../",
            "https://foo.localhost./",
            "https://metadata.google.internal./",
            "https://[64:ff9b:1::a00:1]/",
            "https://[64:ff9b:1:ffff::7f00:1]/",
        ] {
            assert!(check_url(bad, strict).is_err(), "{bad}");
        }
    }

    /// A loopback listener that counts the connections it accepted.
    async fn listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = socket.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // The request's head first (these requests have no body), then the answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, accepted)
    }

    /// The delivery client itself refuses a name of a loopback address before connecting: the
    /// resolver is the one the requests go through, not only one that exists.
    #[tokio::test]
    async fn the_delivery_client_refuses_a_loopback_name_before_connecting() {
        let (port, accepted) = listener().await;
        let client = delivery_client(
            TargetPolicy::default(),
            Pinned::default(),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let err = client
            .get(format!("http://localhost:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        assert!(refused_by_resolver(&err), "{err:?}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// With a proxy in the environment the delivery client still connects to the target itself
    /// (after its address check), never through the proxy, which would resolve the name for it.
    /// nextest runs each test in its own process, so the environment is this test's own.
    #[tokio::test]
    async fn the_delivery_client_never_uses_an_environment_proxy() {
        use std::sync::atomic::Ordering;
        let (proxy_port, via_proxy) = listener().await;
        let (target_port, direct) = listener().await;
        let proxy = format!("http://127.0.0.1:{proxy_port}");
        for name in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
        ] {
            std::env::set_var(name, &proxy);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
        let open = TargetPolicy {
            allow_http: true,
            allow_private: true,
        };
        let client =
            delivery_client(open, Pinned::default(), std::time::Duration::from_secs(5)).unwrap();
        let res = client
            .post(format!("http://localhost:{target_port}/hook"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(
            direct.load(Ordering::SeqCst),
            1,
            "sent to the target itself"
        );
        assert_eq!(
            via_proxy.load(Ordering::SeqCst),
            0,
            "never through the proxy"
        );
        // The same environment does reach a client that honours it, so the test can fail.
        let honouring = reqwest::Client::new();
        let _ = honouring
            .get(format!("http://localhost:{target_port}/x"))
            .send()
            .await;
        assert_eq!(
            via_proxy.load(Ordering::SeqCst),
            1,
            "a default client uses the proxy"
        );
    }
}
