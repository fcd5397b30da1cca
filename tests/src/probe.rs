//! Probes that run inside a namespace: TCP connects, listeners, raw frames
//! and a packet sniffer (an AF_PACKET socket sees only what XDP passed).

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// Tries one TCP connection from inside `ns`; true if it was established.
pub fn tcp_connects(
    ns: &Netns,
    to: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<bool, String> {
    ns.run(move || {
        TcpStream::connect_timeout(&SocketAddr::V4(SocketAddrV4::new(to, port)), timeout).is_ok()
    })
}

/// A TCP listener inside a namespace that counts accepted connections.
#[derive(Debug)]
pub struct Listener {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Listens on `0.0.0.0:port` in `ns` (at most `max_life`).
    pub fn start(ns: &Netns, port: u16, max_life: Duration) -> Result<Self, String> {
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (Arc::clone(&accepted), Arc::clone(&stop));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let listener = match TcpListener::bind(("0.0.0.0", port)) {
                Ok(l) => l,
                Err(e) => {
                    drop(tx.send(Err(e.to_string())));
                    return;
                }
            };
            drop(listener.set_nonblocking(true));
            drop(tx.send(Ok(())));
            let deadline = Instant::now() + max_life;
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok(_conn) => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })?;
        rx.recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("listen on {port}: {e}"))?;
        Ok(Self {
            accepted,
            stop,
            thread: Some(thread),
        })
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}

fn packet_socket(iface: &str, timeout: Duration) -> io::Result<(i32, libc::sockaddr_ll)> {
    let ifindex = appvm::netdev::ifindex(iface).map_err(io::Error::other)?;
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: valid fd, pointers to live values of the sizes given.
    let ok = unsafe {
        libc::bind(
            fd,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        ) == 0
            && libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            ) == 0
    };
    if !ok {
        let e = io::Error::last_os_error();
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok((fd, addr))
}

/// Sends raw Ethernet frames out of `iface` in `ns`.
pub fn send_frames(ns: &Netns, iface: &str, frames: Vec<Vec<u8>>) -> Result<(), String> {
    let iface = iface.to_owned();
    ns.run(move || -> Result<(), String> {
        let (fd, addr) =
            packet_socket(&iface, Duration::from_millis(100)).map_err(|e| e.to_string())?;
        let mut result = Ok(());
        for frame in &frames {
            // SAFETY: valid fd and buffers.
            let sent = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if sent < 0 {
                result = Err(format!("sendto: {}", io::Error::last_os_error()));
                break;
            }
        }
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
        result
    })?
}

/// Records frames received on an interface (not the ones it sends).
#[derive(Debug)]
pub struct Sniffer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Vec<u8>>>>,
}

impl Sniffer {
    /// Starts capturing in `ns` on `iface` (at most `max_life`).
    pub fn start(ns: &Netns, iface: &str, max_life: Duration) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let iface = iface.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let fd = match packet_socket(&iface, Duration::from_millis(50)) {
                Ok((fd, _)) => {
                    drop(tx.send(Ok(())));
                    fd
                }
                Err(e) => {
                    drop(tx.send(Err(e.to_string())));
                    return Vec::new();
                }
            };
            let mut frames = Vec::new();
            let deadline = Instant::now() + max_life;
            let mut buf = vec![0_u8; 65536];
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                // SAFETY: zeroed sockaddr_ll is valid as an out parameter.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut len = size_of::<libc::sockaddr_ll>() as u32;
                // SAFETY: valid fd and buffers of the sizes given.
                let n = unsafe {
                    libc::recvfrom(
                        fd,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&raw mut from).cast(),
                        &raw mut len,
                    )
                };
                if n > 0 && from.sll_pkttype != libc::PACKET_OUTGOING {
                    frames.push(buf[..n as usize].to_vec());
                }
            }
            // SAFETY: closing the fd we opened.
            unsafe { libc::close(fd) };
            frames
        })?;
        rx.recv().map_err(|e| e.to_string())??;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and returns what was received.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            drop(t.join());
        }
    }
}
