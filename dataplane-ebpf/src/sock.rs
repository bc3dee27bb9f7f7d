//! Socket-level load balancing (cgroup sock_addr hooks): `connect()` and unconnected
//! `sendmsg()` to a Service frontend are sent to a backend, so connected sockets pay no
//! per-packet NAT; a socket keeps its backend per Service (`LB4_SOCK_FWD`) while that backend
//! serves, as a conntrack entry keeps a flow's, so the datagrams of an unconnected UDP socket
//! do not scatter over the backends; `getpeername()` and `recvmsg()` report the Service
//! address again. Attached to a cgroup v2 directory: every process in it (whatever its network
//! namespace) is covered, nothing outside it.

use aya_ebpf::{
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use dataplane_common::{
    lb::{IPPROTO_TCP, IPPROTO_UDP},
    Lb4SockFwd, Lb4SockKey, Lb4SockRevNat,
};

use crate::{
    ct,
    lb::{self, Client},
    maps::{LB4_SOCK_FWD, LB4_SOCK_REVNAT},
};

/// Let the call proceed (with the address as the program left it).
const PROCEED: i32 = 1;
/// Fail the call; the error is what `bpf_set_retval` set.
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;
const EHOSTUNREACH: i32 = 113;

#[cgroup_sock_addr(connect4)]
pub fn sock4_connect(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sock4_sendmsg(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn sock4_recvmsg(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    // recvmsg4 programs must return 1.
    PROCEED
}

#[cgroup_sock_addr(getpeername4)]
pub fn sock4_getpeer(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    // getpeername4 programs must return 1.
    PROCEED
}

/// connect4/sendmsg4: a frontend address becomes a backend's; a frontend without backends
/// fails the call with ECONNREFUSED.
#[inline(always)]
fn translate(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: the context the kernel passed; these fields are readable in connect4/sendmsg4.
    let (proto, ip4, port) = unsafe { ((*sa).protocol, (*sa).user_ip4, (*sa).user_port) };
    let proto = proto as u8;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return PROCEED;
    }
    // user_ip4 and the low 16 bits of user_port hold network byte order.
    let addr = ip4.to_ne_bytes();
    let port_be = port as u16;
    let Some(svc) = lb::lookup_service(addr, port_be, proto, true) else {
        return PROCEED;
    };
    if svc.count == 0 {
        // SAFETY: plain helper call (allowed in connect4 and sendmsg4).
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return REJECT;
    }
    // SAFETY: plain helper calls on this program's context.
    let (netns_cookie, sock_cookie) = unsafe {
        (
            bpf_get_netns_cookie(sa.cast()),
            bpf_get_socket_cookie(sa.cast()),
        )
    };
    let fwd_key = Lb4SockKey {
        cookie: sock_cookie,
        addr_be: addr,
        port_be,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    let kept = (unsafe { LB4_SOCK_FWD.get(&fwd_key) })
        .copied()
        .filter(|f| lb::still_serves(f.backend_id, f.addr_be, f.port_be, proto));
    let b = match kept {
        Some(f) => dataplane_common::Lb4Backend {
            addr_be: f.addr_be,
            port_be: f.port_be,
            ..Default::default()
        },
        None => {
            let client = Client {
                addr: [0; 4],
                netns_cookie,
            };
            let Ok((id, b)) = lb::select_backend(&svc, client, ct::now()) else {
                // Counted by select_backend.
                // SAFETY: plain helper call.
                unsafe { bpf_set_retval(-EHOSTUNREACH) };
                return REJECT;
            };
            let chosen = Lb4SockFwd {
                backend_id: id,
                addr_be: b.addr_be,
                port_be: b.port_be,
                _pad: 0,
            };
            // Best effort: without it the next send chooses again.
            let _ = LB4_SOCK_FWD.insert(&fwd_key, &chosen, 0);
            b
        }
    };
    // SAFETY: user_ip4/user_port are writable in connect4 and sendmsg4.
    unsafe {
        (*sa).user_ip4 = u32::from_ne_bytes(b.addr_be);
        (*sa).user_port = b.port_be as u32;
    }
    let key = Lb4SockKey {
        cookie: sock_cookie,
        addr_be: b.addr_be,
        port_be: b.port_be,
        _pad: 0,
    };
    let value = Lb4SockRevNat {
        addr_be: addr,
        port_be,
        rev_nat_id: svc.rev_nat_id,
    };
    // Best effort: without it the socket works, but reports the backend as its peer.
    let _ = LB4_SOCK_REVNAT.insert(&key, &value, 0);
    PROCEED
}

/// recvmsg4/getpeername4: a backend address this socket was sent to becomes the Service's.
#[inline(always)]
fn reverse(ctx: &SockAddrContext) {
    let sa = ctx.sock_addr;
    // SAFETY: the context the kernel passed; readable in recvmsg4/getpeername4.
    let (ip4, port) = unsafe { ((*sa).user_ip4, (*sa).user_port) };
    // SAFETY: plain helper call.
    let cookie = unsafe { bpf_get_socket_cookie(sa.cast()) };
    let key = Lb4SockKey {
        cookie,
        addr_be: ip4.to_ne_bytes(),
        port_be: port as u16,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    if let Some(v) = (unsafe { LB4_SOCK_REVNAT.get(&key) }).copied() {
        // SAFETY: user_ip4/user_port are writable in recvmsg4/getpeername4.
        unsafe {
            (*sa).user_ip4 = u32::from_ne_bytes(v.addr_be);
            (*sa).user_port = v.port_be as u32;
        }
    }
}
