//! CPU time of a QEMU process, for `dominfo`. QMP has no CPU time under TCG
//! (`query-stats` answers `[]` without KVM; `query-cpus-fast` gives only vCPU thread ids),
//! so this reads `utime + stime` from `/proc/<pid>/stat`, as libvirt does. Owns the parsing
//! only; which pid to ask about is the supervisor's business.

use std::time::Duration;

/// Clock ticks per second in `/proc` files: `USER_HZ`, fixed at 100 in Linux's ABI.
const USER_HZ: u64 = 100;

/// CPU time (user + system) of process `pid`.
pub fn of_process(pid: u32) -> std::io::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has no utime and stime fields"),
        )
    })
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn parse_stat(text: &str) -> Option<Duration> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest starts at field 3 (state); utime and stime are fields 14 and 15
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_millis(ticks.checked_mul(1000 / USER_HZ)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_utime_and_stime_after_the_command_name() {
        let line = "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 75 0 0 20 0 \
                    3 0 100 1000 200 18446744073709551615\n";
        assert_eq!(parse_stat(line), Some(Duration::from_millis(3250)));
        let tricky = "7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 1 1\n";
        assert_eq!(parse_stat(tricky), Some(Duration::from_millis(30)));
        assert_eq!(parse_stat("7 (x) R 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn reads_this_process() {
        let used = of_process(std::process::id()).expect("own /proc/self/stat");
        assert!(used < Duration::from_secs(24 * 3600));
        assert!(of_process(u32::MAX).is_err());
    }
}
