//! How a worker waits for its next tick while bridged legs' packets wake it at once:
//! epoll + timerfd on Linux, 1 ms polling elsewhere.

use crate::clock::Clock;
#[cfg(not(target_os = "linux"))]
use std::net::SocketAddr;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Readiness of bridged legs' sockets plus a timer for the next tick: epoll + timerfd on
/// Linux (woken by the first packet, or at the tick with ns precision).
#[cfg(target_os = "linux")]
pub(super) struct Poller {
    epoll: std::os::fd::OwnedFd,
    timer: std::os::fd::OwnedFd,
    armed: Option<Instant>,
    events: Vec<libc::epoll_event>,
}

#[cfg(target_os = "linux")]
impl Poller {
    const TIMER: u64 = u64::MAX;

    pub(super) fn new() -> std::io::Result<Poller> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls; the returned fds are owned from here on.
        let (epoll, timer) = unsafe {
            let e = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if e < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let epoll = std::os::fd::OwnedFd::from_raw_fd(e);
            let t = libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            );
            if t < 0 {
                return Err(std::io::Error::last_os_error());
            }
            (epoll, std::os::fd::OwnedFd::from_raw_fd(t))
        };
        let p = Poller {
            epoll,
            timer,
            armed: None,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        };
        use std::os::fd::AsRawFd;
        p.ctl(libc::EPOLL_CTL_ADD, p.timer.as_raw_fd(), Self::TIMER)?;
        Ok(p)
    }

    fn ctl(&self, op: libc::c_int, fd: libc::c_int, token: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd, a live event struct.
        let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn add(&mut self, socket: &UdpSocket, token: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        self.ctl(libc::EPOLL_CTL_ADD, socket.as_raw_fd(), token)
    }

    pub(super) fn remove(&mut self, socket: &UdpSocket) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        self.ctl(libc::EPOLL_CTL_DEL, socket.as_raw_fd(), 0)
    }

    /// Waits until a registered socket is readable or `deadline`; readable tokens go to `ready`.
    pub(super) fn wait(&mut self, clock: &Clock, deadline: Instant, ready: &mut Vec<u64>) {
        use std::os::fd::AsRawFd;
        ready.clear();
        if self.armed != Some(deadline) {
            let left = deadline.saturating_duration_since(clock.instant());
            // A zero it_value disarms the timer: at least 1 ns.
            let left = left.max(Duration::from_nanos(1));
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
                },
            };
            // SAFETY: valid timerfd and itimerspec; the old value is not asked for.
            unsafe {
                libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut());
            }
            self.armed = Some(deadline);
        }
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                // Bounded anyway, in case the timer was lost.
                20,
            )
        };
        for ev in self.events.iter().take(n.max(0) as usize) {
            let token = ev.u64;
            if token != Self::TIMER {
                ready.push(token);
            }
        }
    }
}

/// Elsewhere: sleep to the tick in 1 ms steps and try every registered socket after each.
#[cfg(not(target_os = "linux"))]
pub(super) struct Poller {
    tokens: Vec<(u64, SocketAddr)>,
}

#[cfg(not(target_os = "linux"))]
impl Poller {
    pub(super) fn new() -> std::io::Result<Poller> {
        Ok(Poller { tokens: Vec::new() })
    }

    pub(super) fn add(&mut self, socket: &UdpSocket, token: u64) -> std::io::Result<()> {
        self.tokens.push((token, socket.local_addr()?));
        Ok(())
    }

    pub(super) fn remove(&mut self, socket: &UdpSocket) -> std::io::Result<()> {
        let addr = socket.local_addr()?;
        self.tokens.retain(|t| t.1 != addr);
        Ok(())
    }

    pub(super) fn wait(&mut self, clock: &Clock, deadline: Instant, ready: &mut Vec<u64>) {
        let left = deadline.saturating_duration_since(clock.instant());
        std::thread::sleep(left.min(Duration::from_millis(1)));
        ready.clear();
        ready.extend(self.tokens.iter().map(|t| t.0));
    }
}
