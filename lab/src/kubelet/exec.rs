//! One `kubectl exec` session on the kubelet port: the command is started in the pod (on a
//! pseudo-terminal for `-t`), its streams travel over the WebSocket in the channel protocol of
//! [`super::stream`], terminal resizes reach the pty, and the exit code ends the session on
//! the error channel.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::nsexec;
use super::stream::{self, ExecOptions, Incoming, Outcome, TermSize};

/// How long output may still arrive after the command exited (a background process it
/// started may hold the stream open; kubelet's runtime stops waiting as well).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A started command with its streams.
struct Proc {
    child: tokio::process::Child,
    stdin: Option<Writer>,
    outputs: Vec<(u8, Reader)>,
    /// The pty's controlling side, for resizes (tty sessions only).
    pty: Option<std::fs::File>,
}

/// Starts `cmd` as its own session (so the whole exec can be signalled), on a pty when asked.
fn spawn(mut cmd: std::process::Command, opts: &ExecOptions) -> std::io::Result<Proc> {
    if opts.tty {
        let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe system calls on the child's own fds.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut tcmd = tokio::process::Command::from(cmd);
        let child = tcmd.spawn()?;
        // The slave's copies live in the command: drop it so EOF comes when the child's go.
        drop(tcmd);
        let master = std::fs::File::from(pty.master);
        let reader = tokio::fs::File::from_std(master.try_clone()?);
        let writer = tokio::fs::File::from_std(master.try_clone()?);
        return Ok(Proc {
            child,
            stdin: opts.stdin.then(|| Box::new(writer) as Writer),
            outputs: if opts.stdout { vec![(stream::STDOUT, Box::new(reader) as Reader)] } else { vec![] },
            pty: Some(master),
        });
    }
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(piped(opts.stdin)).stdout(piped(opts.stdout)).stderr(piped(opts.stderr));
    // SAFETY: setsid is an async-signal-safe system call.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd).spawn()?;
    let mut outputs: Vec<(u8, Reader)> = vec![];
    if let Some(o) = child.stdout.take() {
        outputs.push((stream::STDOUT, Box::new(o)));
    }
    if let Some(e) = child.stderr.take() {
        outputs.push((stream::STDERR, Box::new(e)));
    }
    let stdin = child.stdin.take().map(|w| Box::new(w) as Writer);
    Ok(Proc { child, stdin, outputs, pty: None })
}

fn set_size(pty: &std::fs::File, size: TermSize) {
    let ws = libc::winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer on an open pty fd.
    let r = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "resizing the exec pty");
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies the child's stdin from a channel, so a command that does not read its input never
/// stalls the session. `None` (or a dropped sender) closes stdin.
fn stdin_pump(mut w: Writer) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    tx
}

/// Runs one exec session on an upgraded WebSocket. `proto` is the negotiated subprotocol;
/// `cmd` runs the command in the pod (see [`super::enter`]).
pub async fn run(mut socket: WebSocket, proto: &'static str, opts: ExecOptions, cmd: std::process::Command) {
    let mut proc = match spawn(cmd, &opts) {
        Ok(p) => p,
        Err(e) => {
            let why = format!("failed to start {:?}: {e}", opts.command);
            finish(&mut socket, &opts, &Outcome::Failed(why)).await;
            return;
        }
    };
    let pgid = proc.child.id().unwrap_or_default();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(16);
    for (id, mut r) in proc.outputs.drain(..) {
        let tx = out_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            // A pty reads EIO once the last process holding the terminal is gone: that is EOF.
            while let Ok(n @ 1..) = r.read(&mut buf).await {
                if tx.send((id, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(out_tx);
    let mut stdin = proc.stdin.take().map(stdin_pump);
    let mut exit: Option<i32> = None;
    let mut outputs_done = false;
    let drain = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(drain);
    loop {
        if exit.is_some() && outputs_done {
            break;
        }
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => match stream::decode(proto, &b) {
                    Incoming::Stdin(data) => {
                        if let Some(tx) = &stdin {
                            let _ = tx.send(data.to_vec());
                        }
                    }
                    Incoming::Close(stream::STDIN) => stdin = None,
                    Incoming::Close(_) | Incoming::Ignored => {}
                    Incoming::Resize(size) => {
                        if let Some(pty) = &proc.pty {
                            set_size(pty, size);
                        }
                    }
                    Incoming::Invalid(why) => tracing::debug!(why, "exec: invalid client message"),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client is gone: so is the command (its whole session).
                    if exit.is_none() {
                        nsexec::kill_group(pgid, libc::SIGKILL);
                        let _ = proc.child.wait().await;
                    }
                    return;
                }
                Some(Ok(_)) => {} // pings are answered by the WebSocket layer; text is not used
            },
            chunk = out_rx.recv(), if !outputs_done => match chunk {
                Some((id, data)) => {
                    if socket.send(Message::Binary(stream::frame(id, &data).into())).await.is_err() {
                        if exit.is_none() {
                            nsexec::kill_group(pgid, libc::SIGKILL);
                            let _ = proc.child.wait().await;
                        }
                        return;
                    }
                }
                None => outputs_done = true,
            },
            status = proc.child.wait(), if exit.is_none() => {
                exit = Some(status.map(exit_code).unwrap_or(-1));
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            _ = &mut drain, if exit.is_some() => outputs_done = true,
        }
    }
    finish(&mut socket, &opts, &Outcome::Exited(exit.unwrap_or(-1))).await;
}

/// The final status on the error channel, then a normal close (client-go reads that as EOF
/// on every stream).
async fn finish(socket: &mut WebSocket, opts: &ExecOptions, outcome: &Outcome) {
    let body = stream::status(&opts.command, outcome).to_string();
    let _ = socket.send(Message::Binary(stream::frame(stream::ERROR, body.as_bytes()).into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Message as Client;

    /// Serves one exec of `argv` (run on this machine, no pod) per connection on a local port.
    async fn server(argv: &'static [&'static str], opts: ExecOptions) -> std::net::SocketAddr {
        let app = axum::Router::new().route(
            "/exec",
            axum::routing::get(move |ws: axum::extract::ws::WebSocketUpgrade| {
                let opts = opts.clone();
                async move {
                    let ws = ws.protocols(stream::PROTOCOLS);
                    let proto = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
                        Some(stream::V4) => stream::V4,
                        _ => stream::V5,
                    };
                    ws.on_upgrade(move |socket| {
                        let mut cmd = std::process::Command::new(argv[0]);
                        cmd.args(&argv[1..]);
                        run(socket, proto, opts, cmd)
                    })
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    async fn connect(addr: std::net::SocketAddr, proto: &str) -> Ws {
        let mut req = format!("ws://{addr}/exec").into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", proto.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], proto);
        ws
    }

    /// What came back on each stream until the server closed the connection normally.
    #[derive(Default, Debug)]
    struct Got {
        stdout: String,
        stderr: String,
        status: Option<serde_json::Value>,
        closed_normally: bool,
    }

    async fn collect(ws: &mut Ws) -> Got {
        let mut got = Got::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
            match msg.unwrap() {
                Client::Binary(b) => match b[0] {
                    stream::STDOUT => got.stdout.push_str(&String::from_utf8_lossy(&b[1..])),
                    stream::STDERR => got.stderr.push_str(&String::from_utf8_lossy(&b[1..])),
                    stream::ERROR => got.status = Some(serde_json::from_slice(&b[1..]).unwrap()),
                    other => panic!("unexpected stream {other}"),
                },
                Client::Close(f) => {
                    got.closed_normally = f.is_some_and(|f| u16::from(f.code) == 1000);
                    break;
                }
                _ => {}
            }
        }
        got
    }

    fn opts(stdin: bool, tty: bool) -> ExecOptions {
        ExecOptions { command: vec!["test".into()], stdin, stdout: true, stderr: !tty, tty }
    }

    #[tokio::test]
    async fn stdin_stdout_stderr_and_the_exit_code_travel_on_their_channels() {
        let addr = server(&["sh", "-c", "read x; echo \"got $x\"; echo oops >&2; cat; exit 3"], opts(true, false)).await;
        let mut ws = connect(addr, stream::V5).await;
        ws.send(Client::Binary(stream::frame(stream::STDIN, b"hello\nrest").into())).await.unwrap();
        // v5 half-close of stdin: `cat` sees EOF and the script ends.
        ws.send(Client::Binary(vec![stream::CLOSE, stream::STDIN].into())).await.unwrap();
        let got = collect(&mut ws).await;
        assert_eq!(got.stdout, "got hello\nrest");
        assert_eq!(got.stderr, "oops\n");
        let status = got.status.expect("a status on the error stream");
        assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert!(got.closed_normally);
    }

    #[tokio::test]
    async fn success_is_a_success_status_and_v4_works_too() {
        let addr = server(&["sh", "-c", "echo ok"], opts(false, false)).await;
        let mut ws = connect(addr, stream::V4).await;
        let got = collect(&mut ws).await;
        assert_eq!(got.stdout, "ok\n");
        assert_eq!(got.status.unwrap()["status"], "Success");
    }

    #[tokio::test]
    async fn a_tty_gets_the_clients_size_and_merges_stderr() {
        let addr = server(&["sh", "-c", "read x; stty size; tty >/dev/null && echo is-a-tty; echo err >&2"], opts(true, true)).await;
        let mut ws = connect(addr, stream::V5).await;
        let size = br#"{"Width":100,"Height":30}"#;
        ws.send(Client::Binary(stream::frame(stream::RESIZE, size).into())).await.unwrap();
        ws.send(Client::Binary(stream::frame(stream::STDIN, b"go\n").into())).await.unwrap();
        let got = collect(&mut ws).await;
        assert!(got.stdout.contains("30 100"), "{got:?}");
        assert!(got.stdout.contains("is-a-tty"), "{got:?}");
        assert!(got.stdout.contains("err"), "stderr arrives through the terminal: {got:?}");
        assert!(got.stderr.is_empty());
        assert_eq!(got.status.unwrap()["status"], "Success");
    }

    #[tokio::test]
    async fn a_command_that_fails_to_start_reports_an_internal_error() {
        let addr = server(&["/nonexistent/program"], opts(false, false)).await;
        let mut ws = connect(addr, stream::V5).await;
        let got = collect(&mut ws).await;
        let status = got.status.unwrap();
        assert_eq!(status["reason"], "InternalError", "{status}");
    }

    #[tokio::test]
    async fn the_command_dies_when_the_client_goes_away() {
        let addr = server(&["sh", "-c", "echo $$; exec sleep 30"], opts(false, false)).await;
        let mut ws = connect(addr, stream::V5).await;
        let pid = loop {
            match ws.next().await.unwrap().unwrap() {
                Client::Binary(b) if b[0] == stream::STDOUT => {
                    break String::from_utf8_lossy(&b[1..]).trim().parse::<u32>().unwrap()
                }
                _ => {}
            }
        };
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(ws);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
                .unwrap_or(true)
        };
        while !gone() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone(), "sleep {pid} outlived its exec session");
    }
}
