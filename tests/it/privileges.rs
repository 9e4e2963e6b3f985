#![allow(dead_code)] // used by the chart and privilege tests as they land
//! What the Helm chart grants the exporter, in one place: the chart test checks the rendered
//! DaemonSet grants exactly these, and the privilege tests run the exporter under `setpriv` with
//! exactly these and check it still produces its metrics.

/// The DaemonSet container runs as uid 0 with every capability dropped but these. Kubernetes
/// gives added capabilities to a non-root user only in the bounding set (no ambient
/// capabilities), so uid 0 is what makes them effective; without them uid 0 reads no more than
/// any other user of another user's processes.
/// - `SYS_PTRACE`: another user's `/proc/PID/{exe,environ,fd/*}` (ptrace read access);
/// - `DAC_READ_SEARCH`: list another user's `/proc/PID/fd` (mode 0500, owned by the app's user).
pub const CHART_DAEMONSET_CAPABILITIES: &[&str] = &["SYS_PTRACE", "DAC_READ_SEARCH"];

/// Added with `inspector.enterNetns`: `setns` into a pod's network namespace needs `SYS_ADMIN`.
pub const CHART_ENTER_NETNS_CAPABILITIES: &[&str] = &["SYS_ADMIN"];

/// Added with `inspector.activate`: `SIGUSR1` to another user's process needs `KILL`.
pub const CHART_ACTIVATE_CAPABILITIES: &[&str] = &["KILL"];
