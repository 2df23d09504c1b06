"""The lab's network: a bridge, one namespace and veth per host, private addresses, and the nft
table that NATs the hosts to the package registries only. Every name is fixed, so a later `up`
finds and replaces what an unclean stop left behind."""

from __future__ import annotations

from pathlib import Path

from lab.proc import LabError, run

PREFIX = "llmlab"
BRIDGE = f"{PREFIX}-br"
NFT_TABLE = PREFIX
SUBNET = "10.231.0.0/24"
GATEWAY = "10.231.0.1"
HOSTS = {"mini": "10.231.0.11", "studio": "10.231.0.12"}


def namespace(host: str) -> str:
    return f"{PREFIX}-{host}"


def nameservers() -> list[str]:
    servers = []
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith("127."):
            servers.append(parts[1])
    if not servers:
        raise LabError("no non-loopback nameserver in /etc/resolv.conf for the lab hosts to use")
    return servers


def up() -> None:
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    for host, address in HOSTS.items():
        ns = namespace(host)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", ns, "master", BRIDGE)
        run("ip", "link", "set", ns, "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "route", "add", "default", "via", GATEWAY)
    dns = ", ".join(nameservers())
    # Hosts talk to each other (bridged frames pass this hook where br_netfilter is loaded); only
    # DNS to this machine's resolvers and HTTP(S) (the package registries) leave the lab.
    rules = f"""
table ip {NFT_TABLE} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {SUBNET} oifname != "{BRIDGE}" masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr {SUBNET} ip daddr {SUBNET} accept
    iifname "{BRIDGE}" ip daddr {{ {dns} }} udp dport 53 accept
    iifname "{BRIDGE}" ip daddr {{ {dns} }} tcp dport 53 accept
    iifname "{BRIDGE}" ip daddr {{ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 }} drop
    iifname "{BRIDGE}" tcp dport {{ 80, 443 }} accept
    iifname "{BRIDGE}" drop
  }}
}}
"""
    run("nft", "-f", "-", input=rules)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def down(ip_forward_before: str | None) -> None:
    run("nft", "delete", "table", "ip", NFT_TABLE, check=False)
    for host in HOSTS:
        run("ip", "link", "del", namespace(host), check=False)
        run("ip", "netns", "del", namespace(host), check=False)
    run("ip", "link", "del", BRIDGE, check=False)
    if ip_forward_before is not None:
        Path("/proc/sys/net/ipv4/ip_forward").write_text(f"{ip_forward_before}\n")
