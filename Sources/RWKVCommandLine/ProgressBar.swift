import Foundation
import RWKVFormats

/// A one-line progress bar on stderr, redrawn in place, shown only when stderr is a terminal
/// (so logs and pipes stay clean). Thread-safe; redraws at most ten times a second. Used by all
/// three programs; the libraries report progress through plain callbacks.
public final class ProgressBar: @unchecked Sendable {
    private var total: Int
    private let label: String
    private let enabled: Bool
    private let width = 30
    private let lock = NSLock()
    private var done = 0
    private var detail = ""
    private var lastDraw = 0.0
    private var drawn = false
    private let start = Date()

    /// - Parameter total: units of work (e.g. bytes); `label` prefixes the line.
    /// - Parameter showsTimeLeft: add the time left, estimated from the pace so far (for work
    ///   whose units cost about the same each, as the upgrade's blocks).
    public init(total: Int, label: String, enabled: Bool = ProgressBar.stderrIsTerminal, showsTimeLeft: Bool = false) {
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled
        self.showsTimeLeft = showsTimeLeft
    }

    private let showsTimeLeft: Bool

    public static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    /// Sets the work done so far and what is being worked on.
    public func update(_ done: Int, total: Int? = nil, detail: String? = nil) {
        lock.lock()
        defer { lock.unlock() }
        if let total { self.total = max(total, 1) }
        self.done = min(done, self.total)
        if let detail { self.detail = Printable.escaped(detail, limit: 80) }   // tensor names come from files
        guard enabled else { return }
        let now = Date().timeIntervalSince(start)
        if now - lastDraw >= 0.1 || self.done == self.total {
            lastDraw = now
            draw()
        }
    }

    public func advance(by n: Int, detail: String? = nil) {
        lock.lock()
        let value = done + n
        lock.unlock()
        update(value, detail: detail)
    }

    /// A `(done, total, detail)` callback for the libraries' progress reports.
    public var callback: @Sendable (Int, Int, String) -> Void {
        { [self] done, total, detail in update(done, total: total, detail: detail) }
    }

    /// Clears the line so the next output starts clean.
    public func finish() {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1b}[K".utf8)) }
        drawn = false
    }

    /// The line as drawn (without control characters), for tests.
    public func line(columns: Int = 100) -> String {
        let fraction = Double(done) / Double(total)
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        var s = "\(label) [\(bar)] \(String(format: "%3d", Int(fraction * 100)))%"
        if showsTimeLeft, let left = Self.timeLeft(done: done, total: total, elapsed: Date().timeIntervalSince(start)) {
            s += "  " + left + " left"
        }
        if !detail.isEmpty { s += "  " + detail }
        return s.count > columns ? String(s.prefix(columns)) : s
    }

    /// "3m05s" from the pace so far; nil before the first unit is done.
    static func timeLeft(done: Int, total: Int, elapsed: Double) -> String? {
        guard done > 0, done < total, elapsed > 0 else { return nil }
        let seconds = Int((elapsed / Double(done) * Double(total - done)).rounded())
        return seconds >= 60 ? String(format: "%dm%02ds", seconds / 60, seconds % 60) : "\(seconds)s"
    }

    private func draw() {
        var ws = winsize()
        let columns = ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &ws) == 0 && ws.ws_col > 0 ? Int(ws.ws_col) - 1 : 79
        FileHandle.standardError.write(Data(("\r\u{1b}[K" + line(columns: columns)).utf8))
        drawn = true
    }
}
