//! Kernel receive timestamps (SO_TIMESTAMPNS) for RTP, and the wall-clock fallback.

use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Nanoseconds since the epoch now (fallback when the kernel gave no timestamp).
pub(crate) fn wall_ns(_since: Instant) -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Turns on kernel receive timestamps (SO_TIMESTAMPNS) and a larger receive buffer.
pub(crate) fn tune_socket(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let buf: libc::c_int = 1 << 20;
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid fd and option values of the declared size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&buf as *const libc::c_int).cast(),
            size,
        );
    }
}

/// One datagram and its kernel receive timestamp (ns since the epoch), without blocking.
fn recvmsg_stamped(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<i128>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr points at live buffers for the duration of the call; the cmsg walk uses
    // the libc macros over the control buffer the kernel filled.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut stamp = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((n as usize, stamp))
    }
}

pub(crate) async fn recv_stamped(
    rtp: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<i128>)> {
    use std::os::fd::AsRawFd;
    loop {
        rtp.readable().await?;
        match rtp.try_io(tokio::io::Interest::READABLE, || {
            recvmsg_stamped(rtp.as_raw_fd(), buf)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}
