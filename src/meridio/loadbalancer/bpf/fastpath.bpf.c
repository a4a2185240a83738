// SPDX-License-Identifier: Apache-2.0
/* The load balancer's fast path: a tc clsact ingress program (direct-action) that forwards the VIP
 * traffic it can decide exactly to the stream's Maglev target with bpf_redirect_neigh, and passes
 * everything else (TC_ACT_OK) to the stack, where table inet meridio-lb (the slow path) handles it as
 * it does without this program.
 *
 * Per packet: one VIP lookup (hash of the exact address, then an LPM trie of the VIP pieces) gives the
 * piece's flows in priority order, inlined in the value; the first flow that matches names the stream;
 * the stream's generation picks one half of its double-buffered Maglev table (an inner map of 2*M
 * buckets); the bucket names the target. The bucket is nft's: jhash over nft's register layout of
 * saddr . daddr . sport . dport (16 bytes v4, 40 bytes v6), then reciprocal_scale, so fragments and ICMP
 * errors that the slow path hashes reach the same target as the flow's fast-path packets.
 *
 * Passed to the stack: non-IP, IPv4 options, fragments, IPv6 extension headers, TTL/hop limit <= 1,
 * protocols other than TCP/UDP/SCTP (ICMP errors and echo included), ports not in the linear head, no
 * VIP, no matching flow, a flow the loader marked slow (a shape this program does not implement), a
 * stream without targets, a target without a nexthop of the packet's family, a packet too big for the
 * target's link (the stack fragments it or tells the sender the MTU), an SCTP port NAT (CRC32c).
 *
 * The layouts below are mirrored by meridio/loadbalancer/fastmaps.py (struct formats): change both.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_VIPS 4096
#define MAX_FLOWS 16
#define MAX_SRCS 8
#define MAX_PORTS 8
#define MAX_BMS 4
#define MAX_NATS 4
#define MAX_STREAMS 256
#define MAX_TARGETS 65536
#define MAX_FLOW_COUNTERS 4096

#define PROTO_TCP 1
#define PROTO_UDP 2
#define PROTO_SCTP 4

#define FLOW_SLOW 1
#define AF_INET 2
#define AF_INET6 10

struct port_range {
	__u16 first;
	__u16 last;
};

struct source {
	__u32 addr[4]; /* network order; IPv4 uses addr[0] */
	__u32 mask[4];
};

struct byte_match {
	__u16 offset; /* from the L4 header, bytes */
	__u8 len;     /* 1, 2 or 4 */
	__u8 pad;
	__u32 value;  /* host order */
	__u32 mask;
};

struct flow {
	__u32 stream;  /* slot in streams / tables */
	__u32 counter; /* slot in flow_stats */
	__u8 protos;
	__u8 flags;
	__u8 nsrc;
	__u8 nsport;
	__u8 ndport;
	__u8 nbm;
	__u16 pad;
	struct source srcs[MAX_SRCS];
	struct port_range sports[MAX_PORTS];
	struct port_range dports[MAX_PORTS];
	struct byte_match bms[MAX_BMS];
};

struct nat {
	__u8 protos;
	__u8 pad;
	__u16 port;
	__u16 target_port;
	__u16 pad2;
};

struct vip {
	__u32 nflows;
	__u32 nnats;
	struct nat nats[MAX_NATS];
	struct flow flows[MAX_FLOWS];
};

struct stream {
	__u32 seed;
	__u32 m;   /* buckets; 0: no targets (the slow path drops) */
	__u32 gen; /* which half of the table is live: buckets [gen*m, gen*m + m) */
	__u32 pad;
};

struct target {
	__u32 ifindex4; /* 0: no IPv4 nexthop */
	__u32 ifindex6;
	__u32 addr4;
	__u32 addr6[4];
};

struct stats {
	__u64 packets;
	__u64 bytes;
};

struct lpm4 {
	__u32 prefixlen;
	__u32 addr;
};

struct lpm6 {
	__u32 prefixlen;
	__u32 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, __u32);
	__type(value, struct vip);
} vip4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct in6_addr);
	__type(value, struct vip);
} vip6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_VIPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm4);
	__type(value, struct vip);
} vip4_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_VIPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm6);
	__type(value, struct vip);
} vip6_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_STREAMS);
	__type(key, __u32);
	__type(value, struct stream);
} streams SEC(".maps");

struct bucket_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2); /* the loader creates each stream's with 2*M entries (BPF_F_INNER_MAP) */
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32); /* target slot, 0 = none */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_STREAMS);
	__type(key, __u32);
	__array(values, struct bucket_table);
} tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct target);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct stats);
} target_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_FLOW_COUNTERS);
	__type(key, __u32);
	__type(value, struct stats);
} flow_stats SEC(".maps");

/* Not read by the program: which flow owns each flow_stats slot (a 64-bit fingerprint of its counter
 * name), so that a restarted loader re-opens the pins and keeps every flow on its slot and count. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_FLOW_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} flow_names SEC(".maps");

/* --- nft's jhash: the kernel's byte jhash (include/linux/jhash.h) over 32-bit little-endian words --- */

static __always_inline __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

#define JHASH_MIX(a, b, c)                          \
	do {                                        \
		a -= c; a ^= rol32(c, 4);  c += b;  \
		b -= a; b ^= rol32(a, 6);  a += c;  \
		c -= b; c ^= rol32(b, 8);  b += a;  \
		a -= c; a ^= rol32(c, 16); c += b;  \
		b -= a; b ^= rol32(a, 19); a += c;  \
		c -= b; c ^= rol32(b, 4);  b += a;  \
	} while (0)

#define JHASH_FINAL(a, b, c)                        \
	do {                                        \
		c ^= b; c -= rol32(b, 14);          \
		a ^= c; a -= rol32(c, 11);          \
		b ^= a; b -= rol32(a, 25);          \
		c ^= b; c -= rol32(b, 16);          \
		a ^= c; a -= rol32(c, 4);           \
		b ^= a; b -= rol32(a, 14);          \
		c ^= b; c -= rol32(b, 24);          \
	} while (0)

#define JHASH_INITVAL 0xdeadbeef

/* nft registers: saddr, daddr, then each 2-byte port zero-padded in its own 4-byte register. */
static __always_inline __u32 jhash4(__u32 saddr, __u32 daddr, __u16 sport, __u16 dport, __u32 seed)
{
	__u32 a, b, c;

	a = b = c = JHASH_INITVAL + 16 + seed;
	a += saddr;
	b += daddr;
	c += sport;
	JHASH_MIX(a, b, c);
	a += dport;
	JHASH_FINAL(a, b, c);
	return c;
}

static __always_inline __u32 jhash6(const __u32 *s, const __u32 *d, __u16 sport, __u16 dport, __u32 seed)
{
	__u32 a, b, c;

	a = b = c = JHASH_INITVAL + 40 + seed;
	a += s[0]; b += s[1]; c += s[2];
	JHASH_MIX(a, b, c);
	a += s[3]; b += d[0]; c += d[1];
	JHASH_MIX(a, b, c);
	a += d[2]; b += d[3]; c += sport;
	JHASH_MIX(a, b, c);
	a += dport;
	JHASH_FINAL(a, b, c);
	return c;
}

/* --- flow matching --------------------------------------------------------------------------------- */

struct pkt {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport; /* network order, as nft's registers hold them */
	__u16 dport;
	__u32 l4off;
	__u8 proto;
	__u8 v6;
};

static __always_inline int in_ranges(const struct port_range *r, __u32 n, __u16 port)
{
	if (n == 0)
		return 1;
	for (__u32 i = 0; i < MAX_PORTS; i++) {
		if (i >= n)
			break;
		if (port >= r[i].first && port <= r[i].last)
			return 1;
	}
	return 0;
}

static __always_inline int source_ok(const struct flow *f, const struct pkt *p)
{
	if (f->nsrc == 0)
		return 1;
	for (__u32 i = 0; i < MAX_SRCS; i++) {
		if (i >= f->nsrc)
			break;
		const struct source *s = &f->srcs[i];
		if ((p->saddr[0] & s->mask[0]) != s->addr[0])
			continue;
		if (!p->v6)
			return 1;
		if ((p->saddr[1] & s->mask[1]) == s->addr[1] && (p->saddr[2] & s->mask[2]) == s->addr[2] &&
		    (p->saddr[3] & s->mask[3]) == s->addr[3])
			return 1;
	}
	return 0;
}

static __always_inline int bytes_ok(struct __sk_buff *skb, const struct flow *f, const struct pkt *p)
{
	for (__u32 i = 0; i < MAX_BMS; i++) {
		if (i >= f->nbm)
			break;
		const struct byte_match *bm = &f->bms[i];
		__u32 off = p->l4off + bm->offset;
		__u32 v;
		if (bm->len == 1) {
			__u8 b;
			if (bpf_skb_load_bytes(skb, off, &b, 1))
				return 0;
			v = b;
		} else if (bm->len == 2) {
			__u16 h;
			if (bpf_skb_load_bytes(skb, off, &h, 2))
				return 0;
			v = bpf_ntohs(h);
		} else {
			__u32 w;
			if (bpf_skb_load_bytes(skb, off, &w, 4))
				return 0;
			v = bpf_ntohl(w);
		}
		if ((v & bm->mask) != bm->value)
			return 0;
	}
	return 1;
}

#define NO_FLOW -1
#define SLOW -2

/* The index of the first flow (priority order) that matches, NO_FLOW, or SLOW. */
static __always_inline int match_flow(struct __sk_buff *skb, const struct vip *v, const struct pkt *p, __u8 bit)
{
	__u16 sport = bpf_ntohs(p->sport), dport = bpf_ntohs(p->dport);

	for (__u32 i = 0; i < MAX_FLOWS; i++) {
		if (i >= v->nflows)
			break;
		const struct flow *f = &v->flows[i];
		if (f->flags & FLOW_SLOW)
			return SLOW;
		if (!(f->protos & bit))
			continue;
		if (!source_ok(f, p))
			continue;
		if (!in_ranges(f->sports, f->nsport, sport) || !in_ranges(f->dports, f->ndport, dport))
			continue;
		if (!bytes_ok(skb, f, p))
			continue;
		return i;
	}
	return NO_FLOW;
}

static __always_inline void count(void *map, __u32 slot, __u64 bytes)
{
	struct stats *st = bpf_map_lookup_elem(map, &slot);
	if (st) {
		st->packets++;
		st->bytes += bytes;
	}
}

/* --- the program ------------------------------------------------------------------------------------ */

#define IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define IP_TTL_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, ttl))
#define IP6_HOPS_OFF (ETH_HLEN + __builtin_offsetof(struct ipv6hdr, hop_limit))

static __always_inline __u8 proto_bit(__u8 proto)
{
	return proto == IPPROTO_TCP ? PROTO_TCP : proto == IPPROTO_UDP ? PROTO_UDP :
	       proto == IPPROTO_SCTP ? PROTO_SCTP : 0;
}

static __always_inline int forward(struct __sk_buff *skb, const struct vip *v, struct pkt *p, __u8 hops)
{
	__u8 bit = proto_bit(p->proto);
	int i = match_flow(skb, v, p, bit);
	if (i < 0 || i >= MAX_FLOWS)
		return TC_ACT_OK;
	const struct flow *f = &v->flows[i];
	__u32 slot = f->stream;
	struct stream *st = bpf_map_lookup_elem(&streams, &slot);
	if (!st || st->m == 0)
		return TC_ACT_OK;
	__u32 h = p->v6 ? jhash6(p->saddr, p->daddr, p->sport, p->dport, st->seed)
			: jhash4(p->saddr[0], p->daddr[0], p->sport, p->dport, st->seed);
	__u32 bucket = (__u32)(((__u64)h * st->m) >> 32) + (st->gen ? st->m : 0);
	void *table = bpf_map_lookup_elem(&tables, &slot);
	if (!table)
		return TC_ACT_OK;
	__u32 *tslot = bpf_map_lookup_elem(table, &bucket);
	if (!tslot || *tslot == 0)
		return TC_ACT_OK;
	__u32 tkey = *tslot;
	struct target *t = bpf_map_lookup_elem(&targets, &tkey);
	if (!t)
		return TC_ACT_OK;
	__u32 ifindex = p->v6 ? t->ifindex6 : t->ifindex4;
	__u32 mtu = 0;
	/* no nexthop of this family; or too big for the target's link: the stack fragments it or answers
	 * fragmentation-needed / packet-too-big (a redirect would drop it silently) */
	if (ifindex == 0 || bpf_check_mtu(skb, ifindex, &mtu, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return TC_ACT_OK;

	/* port NAT of the VIP (after the hash, which is over the original port, as in the slow path) */
	__u16 new_port = 0;
	for (__u32 n = 0; n < MAX_NATS; n++) {
		if (n >= v->nnats)
			break;
		if ((v->nats[n].protos & bit) && v->nats[n].port == bpf_ntohs(p->dport)) {
			if (bit == PROTO_SCTP)
				return TC_ACT_OK; /* CRC32c: the slow path's sctp dport set */
			new_port = bpf_htons(v->nats[n].target_port);
			break;
		}
	}

	__u64 bytes = skb->len - ETH_HLEN; /* nft counts from the network header */
	if (p->v6) {
		__u8 nh = hops - 1;
		if (bpf_skb_store_bytes(skb, IP6_HOPS_OFF, &nh, 1, 0))
			return TC_ACT_OK;
	} else {
		__u8 ttl = hops - 1;
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, bpf_htons((__u16)hops << 8), bpf_htons((__u16)ttl << 8), 2) ||
		    bpf_skb_store_bytes(skb, IP_TTL_OFF, &ttl, 1, 0))
			return TC_ACT_SHOT; /* a half-rewritten header must not go on */
	}
	if (new_port) {
		__u32 csum_off = p->l4off + (bit == PROTO_TCP ? 16 : 6);
		__u64 flags = sizeof(new_port) | (bit == PROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0);
		if (bpf_l4_csum_replace(skb, csum_off, p->dport, new_port, flags) ||
		    bpf_skb_store_bytes(skb, p->l4off + 2, &new_port, sizeof(new_port), 0))
			return TC_ACT_SHOT;
	}
	count(&flow_stats, f->counter, bytes);
	count(&target_stats, tkey, bytes);

	struct bpf_redir_neigh nh = {};
	if (p->v6) {
		nh.nh_family = AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, t->addr6, 16);
		return bpf_redirect_neigh(ifindex, &nh, sizeof(nh), 0);
	}
	nh.nh_family = AF_INET;
	nh.ipv4_nh = t->addr4;
	return bpf_redirect_neigh(ifindex, &nh, sizeof(nh), 0);
}

static __always_inline int ipv4(struct __sk_buff *skb, void *data, void *end)
{
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > end)
		return TC_ACT_OK;
	if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)) || ip->ttl <= 1)
		return TC_ACT_OK;
	if (!proto_bit(ip->protocol))
		return TC_ACT_OK;
	__u16 *ports = (void *)(ip + 1);
	if ((void *)(ports + 2) > end)
		return TC_ACT_OK;
	struct pkt p = {};
	p.saddr[0] = ip->saddr;
	p.daddr[0] = ip->daddr;
	p.sport = ports[0];
	p.dport = ports[1];
	p.l4off = ETH_HLEN + sizeof(*ip);
	p.proto = ip->protocol;
	__u8 hops = ip->ttl;
	struct vip *v = bpf_map_lookup_elem(&vip4, &p.daddr[0]);
	if (!v) {
		struct lpm4 k = {32, p.daddr[0]};
		v = bpf_map_lookup_elem(&vip4_prefixes, &k);
		if (!v)
			return TC_ACT_OK;
	}
	return forward(skb, v, &p, hops);
}

static __always_inline int ipv6(struct __sk_buff *skb, void *data, void *end)
{
	struct ipv6hdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > end)
		return TC_ACT_OK;
	if (ip->hop_limit <= 1 || !proto_bit(ip->nexthdr))
		return TC_ACT_OK; /* extension headers (fragments included) go to the stack */
	__u16 *ports = (void *)(ip + 1);
	if ((void *)(ports + 2) > end)
		return TC_ACT_OK;
	struct pkt p = {};
	__builtin_memcpy(p.saddr, &ip->saddr, 16);
	__builtin_memcpy(p.daddr, &ip->daddr, 16);
	p.sport = ports[0];
	p.dport = ports[1];
	p.l4off = ETH_HLEN + sizeof(*ip);
	p.proto = ip->nexthdr;
	p.v6 = 1;
	__u8 hops = ip->hop_limit;
	struct vip *v = bpf_map_lookup_elem(&vip6, p.daddr);
	if (!v) {
		struct lpm6 k = {.prefixlen = 128};
		__builtin_memcpy(k.addr, p.daddr, 16);
		v = bpf_map_lookup_elem(&vip6_prefixes, &k);
		if (!v)
			return TC_ACT_OK;
	}
	return forward(skb, v, &p, hops);
}

SEC("tc")
int meridio_fastpath(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return ipv4(skb, data, end);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return ipv6(skb, data, end);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
