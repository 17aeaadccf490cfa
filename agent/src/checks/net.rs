//! `net [--timeout DURATION]` — this machine's network from the link
//! outwards, read without sending a packet.
//!
//! - **Links**: every interface but loopback, from `getifaddrs(3)` (netlink:
//!   always this process's network namespace), with its operstate and
//!   carrier from `/sys/class/net/NAME` when that is this namespace's view
//!   (`ip netns exec` remounts /sys; the ifindex there must be the one the
//!   kernel gives for the name), else from the interface flags
//!   (`IFF_UP`, `IFF_LOWER_UP`, `IFF_RUNNING`, `IFF_DORMANT`), which say
//!   the same. A link is `up` with carrier and operstate up (or `unknown`
//!   with carrier, as tun devices report); else `down` (administratively),
//!   `no-carrier` (cable, Wi-Fi association, peer) or `dormant`.
//! - **Addresses**: the global-scope addresses of the links that are up:
//!   neither loopback nor link-local (`169.254.0.0/16`, which is what a
//!   machine gives itself when DHCP does not answer, and `fe80::/10`).
//! - **Default route**: IPv4 from `/proc/net/route`, IPv6 from
//!   `/proc/net/ipv6_route` (both follow the process's namespace); rejecting
//!   routes (`unreachable`, `prohibit`) and routes through links that are
//!   not up do not count. The IPv4 one with the lowest metric is preferred.
//!
//! Metrics: `links`, `links_up`, `addresses`, `default_route` (1/0).
//! Fields: `interfaces` (`eth0:up,wlan0:no-carrier`), `gateway` (the
//! default gateway, IPv4 if there is one, else IPv6), `error`: the first of
//! `no-link`, `no-address`, `no-default-route` that applies (absent when
//! all is well). Status: crit when `error` is set, else ok.

use super::{blocking, parse_args, parse_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use nix::net::if_::InterfaceFlags;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

#[derive(clap::Parser, Debug)]
#[command(
    name = "net",
    about = "This machine's network: links, addresses and default route (nothing is sent)"
)]
pub struct NetArgs {
    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// The state of one link, as the `interfaces` field spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Up,
    /// Administratively down (`ip link set … down`, disabled).
    Down,
    /// Up, but no carrier (cable out, no Wi-Fi association, peer down).
    NoCarrier,
    /// Carrier, but waiting for something (802.1X, Wi-Fi authentication).
    Dormant,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::NoCarrier => "no-carrier",
            LinkState::Dormant => "dormant",
        }
    }
}

/// One interface (never loopback).
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    pub state: LinkState,
    /// Global-scope addresses with their prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
}

/// One default route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub dev: String,
    /// `None` for a route straight out of a device (`default dev ppp0`).
    pub gateway: Option<IpAddr>,
    pub metric: u32,
}

/// What was read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Network {
    pub links: Vec<Link>,
    pub routes_v4: Vec<Route>,
    pub routes_v6: Vec<Route>,
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: NetArgs = parse_args("net", args)?;
    ctx.progress
        .say("reading links, addresses and routes (nothing is sent)");
    match blocking(a.timeout, read).await {
        Ok(Ok(net)) => Ok(assess(&net)),
        Ok(Err(e)) => Ok(CheckResult::new("net", "this machine", Status::Unknown, e)),
        Err(e) => Ok(CheckResult::new(
            "net",
            "this machine",
            Status::Unknown,
            format!("reading the network configuration: {e}"),
        )),
    }
}

/// The links, their addresses and the default routes of this process's
/// network namespace.
pub fn read() -> Result<Network, String> {
    let entries = nix::ifaddrs::getifaddrs()
        .map_err(|e| format!("cannot list the network interfaces (getifaddrs): {e}"))?;
    // Per interface: flags, and its addresses.
    let mut seen: BTreeMap<String, (InterfaceFlags, Vec<(IpAddr, u8)>)> = BTreeMap::new();
    for e in entries {
        let slot = seen
            .entry(e.interface_name.clone())
            .or_insert((e.flags, Vec::new()));
        slot.0 |= e.flags;
        let Some(addr) = e.address.as_ref() else {
            continue;
        };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue; // the link-layer entry
        };
        let prefix = e.netmask.as_ref().map(prefix_len).unwrap_or(0);
        slot.1.push((ip, prefix));
    }
    let mut links = Vec::new();
    for (name, (flags, addrs)) in seen {
        if name == "lo" || flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let state = match sysfs_state(&name) {
            Some((operstate, carrier)) => {
                link_state(flags.contains(InterfaceFlags::IFF_UP), carrier, &operstate)
            }
            None => state_from_flags(flags),
        };
        links.push(Link {
            name,
            state,
            addresses: addrs.into_iter().filter(|(ip, _)| is_global(ip)).collect(),
        });
    }
    let read_table = |path: &str| match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        // No IPv6 in this kernel (or disabled): no IPv6 routes.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    };
    Ok(Network {
        links,
        routes_v4: default_routes_v4(&read_table("/proc/net/route")?),
        routes_v6: default_routes_v6(&read_table("/proc/net/ipv6_route")?),
    })
}

fn prefix_len(mask: &nix::sys::socket::SockaddrStorage) -> u8 {
    if let Some(v4) = mask.as_sockaddr_in() {
        u32::from(v4.ip()).count_ones() as u8
    } else if let Some(v6) = mask.as_sockaddr_in6() {
        u128::from(v6.ip()).count_ones() as u8
    } else {
        0
    }
}

/// Global scope: not loopback, not link-local, not unspecified/multicast.
pub fn is_global(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unicast_link_local()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.to_ipv4_mapped().is_some())
        }
    }
}

/// Operstate and carrier from /sys/class/net/NAME, when that folder is this
/// namespace's interface of that name (same ifindex).
fn sysfs_state(name: &str) -> Option<(String, bool)> {
    let dir = Path::new("/sys/class/net").join(name);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let ifindex: u32 = read("ifindex")?.parse().ok()?;
    let ours = nix::net::if_::if_nametoindex(name).ok()?;
    if ifindex != ours {
        return None;
    }
    let operstate = read("operstate")?;
    // Reading `carrier` of a link that is administratively down fails.
    let carrier = read("carrier").as_deref() == Some("1");
    Some((operstate, carrier))
}

/// A link's state from its admin flag, carrier and RFC 2863 operstate.
pub fn link_state(admin_up: bool, carrier: bool, operstate: &str) -> LinkState {
    match operstate {
        "up" => LinkState::Up,
        "unknown" if carrier => LinkState::Up,
        "dormant" => LinkState::Dormant,
        _ if !admin_up => LinkState::Down,
        "down" | "lowerlayerdown" | "unknown" | "testing" => LinkState::NoCarrier,
        _ if !carrier => LinkState::NoCarrier,
        // notpresent and anything newer
        _ => LinkState::Down,
    }
}

/// The same from the interface flags alone (/sys of another namespace).
pub fn state_from_flags(flags: InterfaceFlags) -> LinkState {
    if !flags.contains(InterfaceFlags::IFF_UP) {
        LinkState::Down
    } else if !flags.contains(InterfaceFlags::IFF_LOWER_UP) {
        LinkState::NoCarrier
    } else if flags.contains(InterfaceFlags::IFF_DORMANT) {
        LinkState::Dormant
    } else if flags.contains(InterfaceFlags::IFF_RUNNING) {
        LinkState::Up
    } else {
        LinkState::NoCarrier
    }
}

const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;

/// Default routes of `/proc/net/route`, lowest metric first.
pub fn default_routes_v4(table: &str) -> Vec<Route> {
    let mut out: Vec<Route> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask …
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 {
                return None;
            }
            let gw = u32::from_str_radix(f[2], 16).ok()?;
            // The kernel writes the address in host order of its own bytes.
            let gw = Ipv4Addr::from(gw.to_le_bytes());
            Some(Route {
                dev: f[0].to_string(),
                gateway: (flags & RTF_GATEWAY != 0 && !gw.is_unspecified())
                    .then_some(IpAddr::V4(gw)),
                metric: f[6].parse().unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|r| r.metric);
    out
}

/// Default routes of `/proc/net/ipv6_route`, lowest metric first.
pub fn default_routes_v6(table: &str) -> Vec<Route> {
    let mut out: Vec<Route> = table
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // dest plen src splen nexthop metric refcnt use flags iface
            if f.len() < 10 || f[1] != "00" || u128::from_str_radix(f[0], 16).ok()? != 0 {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 || f[9] == "lo" {
                return None;
            }
            let hop = Ipv6Addr::from(u128::from_str_radix(f[4], 16).ok()?);
            Some(Route {
                dev: f[9].to_string(),
                gateway: (flags & RTF_GATEWAY != 0 && !hop.is_unspecified())
                    .then_some(IpAddr::V6(hop)),
                metric: u32::from_str_radix(f[5], 16).unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|r| r.metric);
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Network {
    /// The links that are up.
    pub fn up(&self) -> Vec<&Link> {
        self.links
            .iter()
            .filter(|l| l.state == LinkState::Up)
            .collect()
    }

    fn usable(&self, r: &Route) -> bool {
        self.links
            .iter()
            .any(|l| l.name == r.dev && l.state == LinkState::Up)
    }

    /// The default route in use: IPv4 with the lowest metric through a link
    /// that is up, else IPv6.
    pub fn default_route(&self) -> Option<&Route> {
        let usable = |r: &&Route| self.usable(r);
        self.routes_v4
            .iter()
            .find(usable)
            .or_else(|| self.routes_v6.iter().find(usable))
    }

    /// The default gateway: IPv4 if a usable IPv4 default route has one,
    /// else IPv6.
    pub fn gateway(&self) -> Option<IpAddr> {
        let usable = |r: &&Route| self.usable(r);
        self.routes_v4
            .iter()
            .filter(usable)
            .find_map(|r| r.gateway)
            .or_else(|| self.routes_v6.iter().filter(usable).find_map(|r| r.gateway))
    }
}

/// This machine's default gateway as the `net` check sees it (for
/// `{default_gateway}` and the like): `None` without a usable one.
pub fn default_gateway() -> Option<IpAddr> {
    read().ok()?.gateway()
}

/// Judge what was read (the result of the check).
pub fn assess(net: &Network) -> CheckResult {
    let up = net.up();
    let addresses: Vec<&(IpAddr, u8)> = up.iter().flat_map(|l| l.addresses.iter()).collect();
    let route = net.default_route();
    let gateway = net.gateway();

    let error = if up.is_empty() {
        Some("no-link")
    } else if addresses.is_empty() {
        Some("no-address")
    } else if route.is_none() {
        Some("no-default-route")
    } else {
        None
    };

    let interfaces = net
        .links
        .iter()
        .map(|l| format!("{}:{}", l.name, l.state.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    let mut facts = plural(net.links.len(), "link", "links");
    if !net.links.is_empty() {
        let named: Vec<String> = if up.is_empty() {
            net.links
                .iter()
                .map(|l| format!("{} {}", l.name, l.state.as_str()))
                .collect()
        } else {
            up.iter().map(|l| l.name.clone()).collect()
        };
        facts.push_str(&format!(", {} up ({})", up.len(), named.join(", ")));
    }
    if !up.is_empty() {
        facts.push_str(&format!(
            ", {}",
            plural(addresses.len(), "address", "addresses")
        ));
        if !addresses.is_empty() {
            let shown: Vec<String> = addresses
                .iter()
                .take(4)
                .map(|(ip, p)| format!("{ip}/{p}"))
                .collect();
            let more = if addresses.len() > 4 { ", …" } else { "" };
            facts.push_str(&format!(" ({}{more})", shown.join(", ")));
        }
    }
    match route {
        Some(r) => match r.gateway {
            Some(gw) => facts.push_str(&format!(", default route via {gw} ({})", r.dev)),
            None => facts.push_str(&format!(", default route dev {}", r.dev)),
        },
        None if !up.is_empty() => {
            let unusable: Vec<&Route> = net.routes_v4.iter().chain(&net.routes_v6).collect();
            match unusable.first() {
                Some(r) => facts.push_str(&format!(
                    ", no usable default route (the one via {} is not up)",
                    r.dev
                )),
                None => facts.push_str(", no default route"),
            }
        }
        None => {}
    }
    let summary = match error {
        None => facts,
        Some("no-link") if net.links.is_empty() => {
            "no link up: no network interface but loopback".to_string()
        }
        Some("no-link") => format!("no link up besides loopback: {facts}"),
        Some("no-address") => format!("no address on the links that are up: {facts}"),
        Some(_) => format!("no default route: {facts}"),
    };
    let status = if error.is_some() {
        Status::Crit
    } else {
        Status::Ok
    };
    let mut r = CheckResult::new("net", "this machine", status, summary)
        .metric("links", net.links.len() as f64)
        .metric("links_up", up.len() as f64)
        .metric("addresses", addresses.len() as f64)
        .metric("default_route", if route.is_some() { 1.0 } else { 0.0 })
        .field("interfaces", interfaces);
    if let Some(gw) = gateway {
        r = r.field("gateway", gw.to_string());
    }
    if let Some(e) = error {
        r = r.field("error", e);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn link(name: &str, state: LinkState, addrs: &[&str]) -> Link {
        Link {
            name: name.into(),
            state,
            addresses: addrs
                .iter()
                .map(|a| {
                    let (ip, p) = a.split_once('/').unwrap();
                    (ip.parse().unwrap(), p.parse().unwrap())
                })
                .collect(),
        }
    }

    fn route(dev: &str, gw: Option<&str>) -> Route {
        Route {
            dev: dev.into(),
            gateway: gw.map(|g| g.parse().unwrap()),
            metric: 0,
        }
    }

    #[test]
    fn ipv4_default_routes() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t0000FEA9\t00000000\t0001\t0\t0\t1000\t0000FFFF\t0\t0\t0\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            *\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n\
            ppp0\t00000000\t00000000\t0001\t0\t0\t900\t00000000\t0\t0\t0\n";
        let r = default_routes_v4(table);
        assert_eq!(
            r,
            vec![
                Route {
                    dev: "eth0".into(),
                    gateway: Some("10.0.0.1".parse().unwrap()),
                    metric: 100
                },
                Route {
                    dev: "wlan0".into(),
                    gateway: Some("192.168.1.1".parse().unwrap()),
                    metric: 600
                },
                Route {
                    dev: "ppp0".into(),
                    gateway: None,
                    metric: 900
                },
            ]
        );
        assert!(default_routes_v4("").is_empty());
    }

    #[test]
    fn ipv6_default_routes() {
        let zero = "00000000000000000000000000000000";
        let table = format!(
            "20010db8000000000000000000000000 40 {zero} 00 {zero} 00000100 00000001 00000000 00000001 eth0\n\
             {zero} 00 {zero} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
             {zero} 00 {zero} 00 {zero} ffffffff 00000001 00000000 00200200 lo\n"
        );
        let mut want = route("eth0", Some("fe80::1"));
        want.metric = 0x400;
        assert_eq!(default_routes_v6(&table), vec![want]);
    }

    #[test]
    fn states() {
        assert_eq!(link_state(true, true, "up"), LinkState::Up);
        assert_eq!(link_state(true, true, "unknown"), LinkState::Up);
        assert_eq!(link_state(true, false, "unknown"), LinkState::NoCarrier);
        assert_eq!(link_state(false, false, "down"), LinkState::Down);
        assert_eq!(link_state(true, false, "down"), LinkState::NoCarrier);
        assert_eq!(
            link_state(true, false, "lowerlayerdown"),
            LinkState::NoCarrier
        );
        assert_eq!(link_state(true, true, "dormant"), LinkState::Dormant);
        let f = InterfaceFlags::IFF_UP | InterfaceFlags::IFF_LOWER_UP | InterfaceFlags::IFF_RUNNING;
        assert_eq!(state_from_flags(f), LinkState::Up);
        assert_eq!(
            state_from_flags(InterfaceFlags::IFF_UP),
            LinkState::NoCarrier
        );
        assert_eq!(state_from_flags(InterfaceFlags::empty()), LinkState::Down);
    }

    #[test]
    fn scopes() {
        for g in ["10.0.0.2", "192.0.2.1", "2001:db8::1", "fd00::1"] {
            assert!(is_global(&g.parse().unwrap()), "{g}");
        }
        for l in [
            "127.0.0.1",
            "169.254.3.4",
            "::1",
            "fe80::1",
            "0.0.0.0",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_global(&l.parse().unwrap()), "{l}");
        }
    }

    #[test]
    fn each_error_in_order() {
        // Nothing but loopback.
        let r = assess(&Network::default());
        assert_eq!(r.status, Status::Crit);
        assert_eq!(r.fields["error"], "no-link");
        assert_eq!(r.metrics["links"], 0.0);
        assert_eq!(r.summary, "no link up: no network interface but loopback");

        // A link without carrier, even with an address and a route.
        let mut net = Network {
            links: vec![link("eth0", LinkState::NoCarrier, &["10.0.0.2/24"])],
            routes_v4: vec![route("eth0", Some("10.0.0.1"))],
            ..Default::default()
        };
        let r = assess(&net);
        assert_eq!(r.fields["error"], "no-link");
        assert_eq!(r.fields["interfaces"], "eth0:no-carrier");
        assert_eq!(r.metrics["links_up"], 0.0);
        assert_eq!(r.metrics["default_route"], 0.0);
        assert!(!r.fields.contains_key("gateway"), "{r:?}");

        // Up, no address.
        net.links = vec![link("eth0", LinkState::Up, &[])];
        let r = assess(&net);
        assert_eq!(r.fields["error"], "no-address");
        assert_eq!(r.metrics["addresses"], 0.0);

        // Up with an address, no route.
        net.links = vec![
            link("eth0", LinkState::Up, &["10.0.0.2/24"]),
            link("wlan0", LinkState::Down, &[]),
        ];
        net.routes_v4.clear();
        let r = assess(&net);
        assert_eq!(r.fields["error"], "no-default-route");
        assert_eq!(r.fields["interfaces"], "eth0:up,wlan0:down");
        assert!(r.summary.contains("no default route"), "{}", r.summary);

        // A route only through a link that is down does not count.
        net.routes_v4 = vec![route("wlan0", Some("192.168.1.1"))];
        let r = assess(&net);
        assert_eq!(r.fields["error"], "no-default-route");
        assert!(r.summary.contains("not up"), "{}", r.summary);

        // All well.
        net.routes_v4 = vec![route("eth0", Some("10.0.0.1"))];
        let r = assess(&net);
        assert_eq!(r.status, Status::Ok);
        assert!(!r.fields.contains_key("error"));
        assert_eq!(r.fields["gateway"], "10.0.0.1");
        assert_eq!(r.metrics["default_route"], 1.0);
        assert_eq!(
            r.summary,
            "2 links, 1 up (eth0), 1 address (10.0.0.2/24), default route via 10.0.0.1 (eth0)"
        );
    }

    #[test]
    fn ipv6_only_gateway() {
        let net = Network {
            links: vec![link("eth0", LinkState::Up, &["2001:db8::2/64"])],
            routes_v6: vec![route("eth0", Some("fe80::1"))],
            ..Default::default()
        };
        let r = assess(&net);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.fields["gateway"], "fe80::1");
    }

    #[test]
    fn reads_this_machine() {
        // Whatever this machine has, reading it works and loopback is skipped.
        let net = read().unwrap();
        assert!(net.links.iter().all(|l| l.name != "lo"), "{net:?}");
        let r = assess(&net);
        assert!(r.fields.contains_key("interfaces"));
        assert_eq!(
            default_gateway().map(|g| g.to_string()),
            r.fields.get("gateway").cloned()
        );
    }
}
