import Foundation

/// Nanoseconds since the Unix epoch; the namespace keeps all times in this unit.
public typealias UnixNanos = Int64

public enum Clock {
    public static func nowNanos() -> UnixNanos {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
    public static func nowSeconds() -> Int64 { Int64(time(nil)) }
}
