//! SIP over TCP: framing by Content-Length (RFC 3261 18.3), one task per connection, and a
//! table of live connections so responses and our requests go back on the same one.

use super::Inbound;
use crate::engine::{Peer, Transport};
use crate::proto::sip::{self, Frame};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Outbound queue per connection; a peer that stops reading loses its connection, not our loop.
const CONNECTION_QUEUE: usize = 256;

#[derive(Clone, Default)]
pub struct Connections {
    writers: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>>,
}

impl Connections {
    pub fn send(&self, addr: SocketAddr, bytes: Bytes) {
        let writer = self.writers.lock().ok().and_then(|w| w.get(&addr).cloned());
        match writer {
            Some(tx) => {
                if tx.try_send(bytes).is_err() {
                    tracing::warn!(to = %addr, "TCP connection congested or closed: message dropped");
                }
            }
            None => tracing::warn!(to = %addr, "no TCP connection to peer: message dropped"),
        }
    }

    fn insert(&self, addr: SocketAddr, tx: mpsc::Sender<Bytes>) {
        if let Ok(mut w) = self.writers.lock() {
            w.insert(addr, tx);
        }
    }

    fn remove(&self, addr: SocketAddr) {
        if let Ok(mut w) = self.writers.lock() {
            w.remove(&addr);
        }
    }

    pub fn len(&self) -> usize {
        self.writers.lock().map(|w| w.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn spawn_listener(
    listener: TcpListener,
    conns: Connections,
    to_control: mpsc::Sender<Inbound>,
) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    spawn_connection(stream, addr, conns.clone(), to_control.clone());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
}

fn spawn_connection(
    stream: TcpStream,
    addr: SocketAddr,
    conns: Connections,
    to_control: mpsc::Sender<Inbound>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(CONNECTION_QUEUE);
    conns.insert(addr, tx);
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(8192);
        let peer = Peer {
            transport: Transport::Tcp,
            addr,
        };
        'conn: loop {
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                match sip::frame(&buf) {
                    Frame::Incomplete => break,
                    Frame::KeepAlive(n) => {
                        let _ = buf.split_to(n);
                    }
                    Frame::Message(n) => {
                        let bytes = buf.split_to(n).freeze();
                        if to_control.send(Inbound { peer, bytes }).await.is_err() {
                            break 'conn;
                        }
                    }
                    Frame::Invalid(reason) => {
                        // The stream is out of sync: nothing after this can be framed.
                        tracing::warn!(from = %addr, reason = %reason, "closing TCP connection: bad framing");
                        metrics::counter!("ccswitch_sip_malformed_total").increment(1);
                        break 'conn;
                    }
                }
            }
        }
        conns.remove(addr);
    });
}
