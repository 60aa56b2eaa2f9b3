//! Every default of `fovea serve` in one table: the command line's flags,
//! the library types' `Default` impls and the README all take them from here,
//! so the binary and an embedding program cannot disagree.

/// Address both servers listen on: loopback, so that exposing fovea is a choice.
pub const LISTEN_IP: [u8; 4] = [127, 0, 0, 1];
/// HTTP port.
pub const HTTP_PORT: u16 = 8080;
/// gRPC port (TF Serving's).
pub const GRPC_PORT: u16 = 8500;
/// Largest request body, and largest encoded image, in bytes.
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;
/// Largest image in pixels, read from its header before decoding.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Most images in one request.
pub const MAX_IMAGES_PER_REQUEST: usize = 64;
/// Classes answered when a request names no `top_k`.
pub const TOP_K: usize = 5;
/// Total time for one URL fetch, redirects included, in ms.
pub const URL_TIMEOUT_MS: u64 = 10_000;
/// Time to connect to a URL's server, in ms.
pub const URL_CONNECT_TIMEOUT_MS: u64 = 3_000;
/// Largest body a URL fetch may return.
pub const URL_MAX_BYTES: usize = 20 * 1024 * 1024;
/// Redirects a URL fetch follows (each one checked like the first URL).
pub const URL_MAX_REDIRECTS: usize = 3;
/// How long in-flight requests may run once shutdown begins, in seconds.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 30;
/// Repository re-scan period in seconds; 0 = never.
pub const POLL_INTERVAL_SECS: u64 = 0;
/// Frame streams open at once, WebSocket and gRPC together.
pub const MAX_STREAMS: usize = 64;
/// Largest frame of a stream in bytes.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// A stream that receives nothing for this long is closed, in seconds.
pub const STREAM_IDLE_TIMEOUT_SECS: u64 = 30;
/// A stream is closed after this long, however busy, in seconds.
pub const MAX_STREAM_DURATION_SECS: u64 = 3600;
/// Frames of one stream in flight or waiting at once (`all` policy, gRPC).
pub const STREAM_WINDOW: usize = 8;
/// Requests a client may make at once before `--rate-limit` applies.
pub const RATE_BURST: u32 = 20;
/// HTTP requests in flight at once, all clients together.
pub const MAX_CONCURRENT_REQUESTS: usize = 1024;
/// Open connections per listener (HTTP and gRPC each); more wait in the
/// kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 4096;
/// How often the API keys file is checked for changes, in seconds.
pub const KEYS_POLL_SECS: u64 = 5;
/// A request's headers must arrive within this many seconds (also the idle
/// time after which a keep-alive connection is closed).
pub const HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// A request's whole body must arrive within this many seconds.
pub const BODY_READ_TIMEOUT_SECS: u64 = 60;
/// gRPC calls one HTTP/2 connection may have open at once.
pub const GRPC_MAX_CONCURRENT_STREAMS: u32 = 128;
