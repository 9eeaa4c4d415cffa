/// A restricted unpickler for torch checkpoints (`data.pkl`). It interprets the pickle opcodes
/// torch.save emits and never executes anything: a GLOBAL becomes a symbol that must be on
/// `Pickle.allowedGlobals`, and REDUCE applies only those allow-listed callables, each as a small
/// data transform written here (an OrderedDict becomes a dict, `_rebuild_tensor_v2` a tensor
/// description). Anything else (os.system, builtins.eval, torch.jit.*, ...) is refused by name.
///
/// Hostile input is expected: every length is checked against the bytes left before anything is
/// allocated, memo indexes and stack depth are checked, and the number of values is capped.
/// Containers (tuple, list, dict, set) live in a flat arena and are referred to by index, so
/// shared and even cyclic references cost nothing and no deep recursive structure is ever built.
///
/// Opcodes: protocol 2 (what torch.save writes by default) plus the protocol 4/5 ones torch
/// writes when given `pickle_protocol=4` (FRAME, MEMOIZE, SHORT_BINUNICODE, STACK_GLOBAL, ...).
/// See pytorch `torch/_weights_only_unpickler.py` for torch's own restricted loader.
public enum Pickle {
    /// Loads a pickle. Errors carry the byte offset of the failing opcode.
    public static func load(_ bytes: [UInt8], limits: Limits = Limits()) throws(PickleError) -> PickleDocument {
        var machine = Unpickler(bytes: bytes, limits: limits)
        return try machine.run()
    }

    /// Caps on what a pickle may build. The defaults are far above any real checkpoint and keep
    /// a hostile one within 64 MB of memory.
    public struct Limits: Sendable {
        /// Values on the stack plus memo entries plus container items. A value costs up to ~48
        /// bytes (24 on the stack, 24 again in the container it goes into) however short its
        /// opcode (`N` is one byte). torch.save writes ~32 opcodes, ~64 values, a tensor: 700,000
        /// values are ~11,000 tensors, 5x the largest RWKV checkpoint (61 layers, ~2,100), in ~34 MB.
        public var maxValues = 700_000
        /// Nested MARKs (torch nests 3 deep).
        public var maxMarkDepth = 256
        /// Dimensions of one tensor.
        public var maxTensorRank = 64
        public init() {}
    }

    /// What an allow-listed GLOBAL stands for.
    public enum Global: Equatable, Sendable {
        case orderedDict
        case rebuildTensorV2
        case rebuildParameter
        case rebuildParameterWithState
        case storageType(DType)
        case torchSize
        case codecsEncode
        case set
        case frozenset
        /// A value rather than a callable, e.g. `torch.bfloat16` stored as a config entry.
        case dtype(DType)
    }

    /// Symbols a checkpoint may name, as `module.name`. Protocol-2 pickles spell builtins
    /// `__builtin__`, which is mapped to `builtins` before the lookup.
    public static let allowedGlobals: [String: Global] = {
        var table: [String: Global] = [
            "collections.OrderedDict": .orderedDict,
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch._utils._rebuild_parameter_with_state": .rebuildParameterWithState,
            "torch.Size": .torchSize,
            "_codecs.encode": .codecsEncode,
            "builtins.set": .set,
            "builtins.frozenset": .frozenset,
        ]
        for dtype in DType.allCases {
            if let storage = dtype.torchStorageName { table["torch." + storage] = .storageType(dtype) }
        }
        let dtypeNames: [(String, DType)] = [("float64", .f64), ("float32", .f32), ("float16", .f16), ("bfloat16", .bf16),
                                             ("int64", .i64), ("int32", .i32), ("int16", .i16), ("int8", .i8), ("uint8", .u8), ("bool", .bool)]
        for (name, dtype) in dtypeNames { table["torch." + name] = .dtype(dtype) }
        return table
    }()

    static func canonicalName(module: String, name: String) -> String {
        let m = module == "__builtin__" ? "builtins" : module
        return m + "." + name
    }
}

/// A value on the unpickler's stack. Containers are indexes into `PickleDocument.containers`.
/// Kept small (24 bytes): a hostile pickle's memory is a few dozen bytes per opcode byte.
public enum PickleValue: Equatable, Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer that does not fit 64 bits (LONG1/LONG4); kept only as its byte count.
    case bigInt(byteCount: Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(Int)
    case list(Int)
    case dict(Int)
    case set(Int)
    /// An allow-listed symbol that has not been applied (a storage type, a dtype).
    case global(String, Pickle.Global)
    indirect case storage(TorchStorageRef)
    indirect case tensor(TorchTensorRef)

    /// A short description for error messages and listings: "int", "str", "list", ...
    public var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .set: return "set"
        case let .global(name, _): return name
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// A torch storage named by a persistent id `('storage', torch.XStorage, key, location, numel)`:
/// its bytes are the zip record `data/<key>`.
public struct TorchStorageRef: Equatable, Sendable {
    public let dtype: DType
    public let key: String
    public let location: String
    public let elementCount: Int
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view of a storage, offset and strides in
/// elements. Shape and strides are validated (non-negative, no overflow); whether the view lies
/// inside its storage is checked by the archive reader, which knows the tensor's name.
public struct TorchTensorRef: Equatable, Sendable {
    public let storage: TorchStorageRef
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]

    public var elementCount: Int { shape.reduce(1, *) }

    /// Elements of the storage the view spans, from `offset`: 0 for an empty tensor, else
    /// 1 + Σ (size-1)·stride. Validated against overflow when the tensor was built.
    public var extent: Int {
        if shape.contains(0) { return 0 }
        return zip(shape, strides).reduce(1) { $0 + ($1.0 - 1) * $1.1 }
    }

    /// True when the view is the row-major layout of its shape (sizes of 1 may have any stride).
    public var isContiguous: Bool {
        var expected = 1
        for (size, stride) in zip(shape, strides).reversed() {
            if size != 1 && stride != expected { return false }
            expected *= size
        }
        return true
    }
}

/// The result of loading a pickle: the root value and the container arena it refers to.
public struct PickleDocument: Sendable {
    public let root: PickleValue
    /// Items of every tuple, list and set; a dict stores key, value, key, value, ...
    public let containers: [[PickleValue]]

    /// Items of a tuple, list or set; nil for anything else.
    public func items(_ value: PickleValue) -> [PickleValue]? {
        switch value {
        case let .tuple(i), let .list(i), let .set(i): return containers[i]
        default: return nil
        }
    }

    /// Key-value pairs of a dict in insertion order (duplicates kept); nil for anything else.
    public func entries(_ value: PickleValue) -> [(key: PickleValue, value: PickleValue)]? {
        guard case let .dict(i) = value else { return nil }
        let flat = containers[i]
        return stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], flat[$0 + 1]) }
    }
}

public struct PickleError: Error, Equatable, CustomStringConvertible {
    public let message: String
    /// Byte offset of the opcode that failed.
    public let offset: Int
    public var description: String { "\(message) (pickle byte \(offset))" }
}

// MARK: - The machine

private struct Unpickler {
    let bytes: [UInt8]
    let limits: Pickle.Limits
    var pos = 0
    var opcodeStart = 0
    var stack: [PickleValue] = []
    var marks: [Int] = []                 // stack heights at each MARK
    var memo: [Int: PickleValue] = [:]
    var containers: [[PickleValue]] = []
    var valueCount = 0
    /// Bytes made by _codecs.encode so far: each call makes a new bytes object, so calls on one
    /// memoized string could otherwise turn a 1 MB pickle into hundreds of MB.
    var encodedBytes = 0

    enum ContainerKind { case list, dict, set }

    init(bytes: [UInt8], limits: Pickle.Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    func fail(_ message: String) -> PickleError { PickleError(message: message, offset: opcodeStart) }

    mutating func run() throws(PickleError) -> PickleDocument {
        while pos < bytes.count {
            opcodeStart = pos
            let op = bytes[pos]
            pos += 1
            if op == Opcode.stop {
                guard marks.isEmpty else { throw fail("STOP inside an unclosed MARK") }
                guard stack.count == 1 else {
                    throw fail(stack.isEmpty ? "STOP with an empty stack" : "STOP with \(stack.count) values on the stack")
                }
                return PickleDocument(root: stack[0], containers: containers)
            }
            try step(op)
        }
        opcodeStart = pos
        throw fail(bytes.isEmpty ? "empty pickle" : "pickle ends without a STOP opcode")
    }

    // MARK: reading operands

    mutating func take(_ n: Int, _ what: String) throws(PickleError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - pos else {
            throw fail("\(what) of \(n) bytes runs past the end of the pickle (\(bytes.count - pos) bytes left)")
        }
        defer { pos += n }
        return bytes[pos..<pos + n]
    }

    mutating func uint(_ width: Int, _ what: String) throws(PickleError) -> UInt64 {
        let b = try take(width, what)
        return b.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A length field, checked against the bytes left before anything is allocated.
    mutating func length(_ width: Int, _ what: String) throws(PickleError) -> Int {
        let n = try uint(width, "\(what) length")
        guard n <= UInt64(bytes.count - pos) else {
            throw fail("\(what) length \(n) runs past the end of the pickle (\(bytes.count - pos) bytes left)")
        }
        return Int(n)
    }

    mutating func line(_ what: String) throws(PickleError) -> String {
        let maxLine = 1024
        var end = pos
        while end < bytes.count, bytes[end] != 0x0a {
            end += 1
            if end - pos > maxLine { throw fail("\(what) longer than \(maxLine) bytes") }
        }
        guard end < bytes.count else { throw fail("\(what) runs past the end of the pickle") }
        defer { pos = end + 1 }
        guard let s = String(validating: bytes[pos..<end], as: UTF8.self) else { throw fail("\(what) is not valid UTF-8") }
        return s
    }

    func utf8(_ b: ArraySlice<UInt8>) throws(PickleError) -> String {
        guard let s = String(validating: b, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    // MARK: stack

    mutating func count(_ n: Int = 1) throws(PickleError) {
        valueCount += n
        if valueCount > limits.maxValues { throw fail("pickle builds more than \(limits.maxValues) values") }
    }

    mutating func push(_ v: PickleValue) throws(PickleError) {
        try count()
        stack.append(v)
    }

    /// Height below which the current MARK frame may not pop.
    var frameBase: Int { marks.last ?? 0 }

    mutating func pop(_ opname: String) throws(PickleError) -> PickleValue {
        guard stack.count > frameBase else { throw fail("\(opname) on an empty stack") }
        return stack.removeLast()
    }

    mutating func top(_ opname: String) throws(PickleError) -> PickleValue {
        guard stack.count > frameBase else { throw fail("\(opname) on an empty stack") }
        return stack[stack.count - 1]
    }

    mutating func popMark(_ opname: String) throws(PickleError) -> [PickleValue] {
        guard let mark = marks.popLast() else { throw fail("\(opname) without a MARK") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    /// Adds a container to the arena; the PickleValue case that refers to it carries its kind.
    mutating func newContainer(_ items: [PickleValue] = []) -> Int {
        containers.append(items)
        return containers.count - 1
    }

    mutating func tuple(_ items: [PickleValue]) -> PickleValue { .tuple(newContainer(items)) }

    // MARK: opcodes

    mutating func step(_ op: UInt8) throws(PickleError) {
        switch op {
        case Opcode.proto:
            let v = try uint(1, "PROTO")
            guard v <= 5 else { throw fail("unsupported pickle protocol \(v)") }
        case Opcode.frame:
            _ = try length(8, "FRAME")        // framing is only a read-ahead hint
        case Opcode.mark:
            guard marks.count < limits.maxMarkDepth else { throw fail("MARKs nested deeper than \(limits.maxMarkDepth)") }
            marks.append(stack.count)

        case Opcode.none: try push(.none)
        case Opcode.newTrue: try push(.bool(true))
        case Opcode.newFalse: try push(.bool(false))
        case Opcode.binInt: try push(.int(Int(Int32(truncatingIfNeeded: try uint(4, "BININT")))))
        case Opcode.binInt1: try push(.int(Int(try uint(1, "BININT1"))))
        case Opcode.binInt2: try push(.int(Int(try uint(2, "BININT2"))))
        case Opcode.long1: try push(try long(try length(1, "LONG1")))
        case Opcode.long4: try push(try long(try length(4, "LONG4")))
        case Opcode.binFloat:
            let b = try take(8, "BINFLOAT")
            try push(.float(Double(bitPattern: b.reduce(0) { $0 << 8 | UInt64($1) })))   // big-endian

        case Opcode.binUnicode: try push(.string(try utf8(try take(try length(4, "BINUNICODE"), "BINUNICODE"))))
        case Opcode.shortBinUnicode: try push(.string(try utf8(try take(try length(1, "SHORT_BINUNICODE"), "SHORT_BINUNICODE"))))
        case Opcode.binUnicode8: try push(.string(try utf8(try take(try length(8, "BINUNICODE8"), "BINUNICODE8"))))
        case Opcode.shortBinString: try push(.string(try utf8(try take(try length(1, "SHORT_BINSTRING"), "SHORT_BINSTRING"))))
        case Opcode.binString:
            let n = try uint(4, "BINSTRING length")
            guard n < 0x8000_0000, n <= UInt64(bytes.count - pos) else { throw fail("BINSTRING length \(n) runs past the end of the pickle") }
            try push(.string(try utf8(try take(Int(n), "BINSTRING"))))
        case Opcode.binBytes: try push(.bytes(Array(try take(try length(4, "BINBYTES"), "BINBYTES"))))
        case Opcode.shortBinBytes: try push(.bytes(Array(try take(try length(1, "SHORT_BINBYTES"), "SHORT_BINBYTES"))))
        case Opcode.binBytes8: try push(.bytes(Array(try take(try length(8, "BINBYTES8"), "BINBYTES8"))))

        case Opcode.emptyTuple: try push(tuple([]))
        case Opcode.tuple: let items = try popMark("TUPLE"); try push(tuple(items))
        case Opcode.tuple1, Opcode.tuple2, Opcode.tuple3:
            let n = Int(op - Opcode.tuple1) + 1
            guard stack.count - frameBase >= n else { throw fail("TUPLE\(n) needs \(n) values on the stack") }
            let items = Array(stack.suffix(n))
            stack.removeLast(n)
            try push(tuple(items))
        case Opcode.emptyList: try push(.list(newContainer()))
        case Opcode.emptyDict: try push(.dict(newContainer()))
        case Opcode.emptySet: try push(.set(newContainer()))
        case Opcode.append:
            let item = try pop("APPEND")
            try add([item], to: try top("APPEND"), kind: .list, "APPEND")
        case Opcode.appends:
            let items = try popMark("APPENDS")
            try add(items, to: try top("APPENDS"), kind: .list, "APPENDS")
        case Opcode.setItem:
            let value = try pop("SETITEM"), key = try pop("SETITEM")
            try add([key, value], to: try top("SETITEM"), kind: .dict, "SETITEM")
        case Opcode.setItems:
            let items = try popMark("SETITEMS")
            guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of values") }
            try add(items, to: try top("SETITEMS"), kind: .dict, "SETITEMS")
        case Opcode.addItems:
            let items = try popMark("ADDITEMS")
            try add(items, to: try top("ADDITEMS"), kind: .set, "ADDITEMS")
        case Opcode.frozenSet:
            let items = try popMark("FROZENSET")
            try push(.set(newContainer(items)))

        case Opcode.binPut: try put(Int(try uint(1, "BINPUT")))
        case Opcode.longBinPut: try put(Int(try uint(4, "LONG_BINPUT")))
        case Opcode.memoize: try put(memo.count)
        case Opcode.binGet: try get(Int(try uint(1, "BINGET")))
        case Opcode.longBinGet: try get(Int(try uint(4, "LONG_BINGET")))

        case Opcode.global:
            let module = try line("GLOBAL module"), name = try line("GLOBAL name")
            try push(try global(module: module, name: name))
        case Opcode.stackGlobal:
            let name = try pop("STACK_GLOBAL"), module = try pop("STACK_GLOBAL")
            guard case let .string(m) = module, case let .string(n) = name else {
                throw fail("STACK_GLOBAL needs two strings, got \(module.kind) and \(name.kind)")
            }
            try push(try global(module: m, name: n))
        case Opcode.reduce:
            let args = try pop("REDUCE"), callable = try pop("REDUCE")
            try push(try reduce(callable, args))
        case Opcode.build:
            // An OrderedDict's state is its attributes (state_dict() sets `_metadata`): data we
            // do not need, so it is dropped. BUILD on anything else would set an object's state.
            _ = try pop("BUILD")
            let target = try top("BUILD")
            guard case .dict = target else { throw fail("BUILD on a \(target.kind) is not supported") }
        case Opcode.binPersId:
            let pid = try pop("BINPERSID")
            try push(.storage(try storage(pid)))
        default:
            throw fail("unsupported pickle opcode \(Opcode.name(op))")
        }
    }

    mutating func long(_ n: Int) throws(PickleError) -> PickleValue {
        let b = try take(n, "LONG")
        guard n <= 8 else { return .bigInt(byteCount: n) }
        guard n > 0 else { return .int(0) }
        var v = b.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if b.last! & 0x80 != 0 && n < 8 { v |= ~0 << UInt64(8 * n) }      // sign-extend
        return .int(Int(Int64(bitPattern: v)))
    }

    mutating func add(_ items: [PickleValue], to target: PickleValue, kind: ContainerKind, _ opname: String) throws(PickleError) {
        let index: Int
        switch (target, kind) {
        case let (.list(i), .list), let (.dict(i), .dict), let (.set(i), .set): index = i
        default: throw fail("\(opname) into a \(target.kind)")
        }
        try count(items.count)
        containers[index].append(contentsOf: items)
    }

    mutating func put(_ index: Int) throws(PickleError) {
        let value = try top("memo put")
        try count()
        memo[index] = value
    }

    mutating func get(_ index: Int) throws(PickleError) {
        guard let value = memo[index] else { throw fail("memo index \(index) was never stored") }
        try push(value)
    }

    func global(module: String, name: String) throws(PickleError) -> PickleValue {
        let symbol = Pickle.canonicalName(module: module, name: name)
        guard let g = Pickle.allowedGlobals[symbol] else {
            if module == "torch", name.hasSuffix("Storage") {
                throw fail("unsupported tensor storage type \(symbol)")
            }
            throw fail("refusing \(symbol): not on the allow-list of tensor-building globals (a pickle global can run code)")
        }
        return .global(symbol, g)
    }

    // MARK: allow-listed callables, as data transforms

    mutating func reduce(_ callable: PickleValue, _ args: PickleValue) throws(PickleError) -> PickleValue {
        guard case let .global(symbol, g) = callable else { throw fail("REDUCE on a \(callable.kind), not an allow-listed global") }
        guard case let .tuple(t) = args else { throw fail("REDUCE arguments for \(symbol) are a \(args.kind), not a tuple") }
        let a = containers[t]
        func arity(_ counts: ClosedRange<Int>) throws(PickleError) {
            guard counts.contains(a.count) else { throw fail("\(symbol) called with \(a.count) arguments") }
        }
        switch g {
        case .orderedDict:
            try arity(0...1)
            let d = newContainer()
            if a.count == 1 {
                guard let pairs = items(a[0]) else { throw fail("OrderedDict from a \(a[0].kind)") }
                for pair in pairs {
                    guard let kv = items(pair), kv.count == 2 else { throw fail("OrderedDict item is not a (key, value) pair") }
                    try count(2)
                    containers[d] += kv
                }
            }
            return .dict(d)
        case .rebuildTensorV2:
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            try arity(6...7)
            return .tensor(try tensor(a))
        case .rebuildParameter, .rebuildParameterWithState:
            // (data, requires_grad, backward_hooks[, state]): the parameter is its data tensor.
            try arity(g == .rebuildParameter ? 3...3 : 4...4)
            guard case .tensor = a[0] else { throw fail("\(symbol) of a \(a[0].kind), not a tensor") }
            return a[0]
        case .torchSize:
            try arity(1...1)
            guard case .tuple = a[0] else { throw fail("torch.Size of a \(a[0].kind)") }
            return a[0]
        case .codecsEncode:
            // protocol 2 stores bytes as _codecs.encode(latin-1 text, "latin1")
            try arity(2...2)
            guard case let .string(text) = a[0], case let .string(codec) = a[1], ["latin1", "latin-1"].contains(codec) else {
                throw fail("_codecs.encode supports only (str, 'latin1')")
            }
            let length = text.unicodeScalars.count
            guard encodedBytes + length <= bytes.count else {
                throw fail("_codecs.encode results hold more bytes than the pickle (\(bytes.count) bytes)")
            }
            encodedBytes += length
            var out: [UInt8] = []
            out.reserveCapacity(length)
            for u in text.unicodeScalars {
                guard u.value < 256 else { throw fail("_codecs.encode: character outside latin-1") }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        case .set, .frozenset:
            try arity(0...1)
            if a.isEmpty { return .set(newContainer()) }
            guard let members = items(a[0]) else { throw fail("\(symbol) of a \(a[0].kind)") }
            try count(members.count)
            return .set(newContainer(members))
        case .storageType, .dtype:
            throw fail("\(symbol) is not callable")
        }
    }

    func items(_ v: PickleValue) -> [PickleValue]? {
        switch v {
        case let .tuple(i), let .list(i): return containers[i]
        default: return nil
        }
    }

    func storage(_ pid: PickleValue) throws(PickleError) -> TorchStorageRef {
        guard let f = items(pid), case .tuple = pid else { throw fail("persistent id is a \(pid.kind), not a tuple") }
        guard f.count == 5, f[0] == .string("storage") || f[0] == .bytes(Array("storage".utf8)) else {
            throw fail("persistent id is not ('storage', type, key, location, numel)")
        }
        guard case let .global(symbol, kind) = f[1], case let .storageType(dtype) = kind else {
            throw fail("persistent id names a \(f[1].kind), not a torch storage type")
        }
        guard case let .string(key) = f[2], !key.isEmpty, !key.contains("/") else { throw fail("persistent id has a bad storage key") }
        guard case let .string(location) = f[3] else { throw fail("persistent id location is a \(f[3].kind)") }
        guard case let .int(numel) = f[4], numel >= 0 else { throw fail("persistent id for \(symbol) has no element count") }
        guard dtype.byteCount(elements: numel) != nil else {
            throw fail("persistent id for \(symbol) claims \(numel) elements, more bytes than can be addressed")
        }
        return TorchStorageRef(dtype: dtype, key: key, location: location, elementCount: numel)
    }

    func intTuple(_ v: PickleValue, _ what: String) throws(PickleError) -> [Int] {
        guard let items = items(v) else { throw fail("tensor \(what) is a \(v.kind), not a tuple") }
        guard items.count <= limits.maxTensorRank else { throw fail("tensor \(what) has \(items.count) dimensions (limit \(limits.maxTensorRank))") }
        var out: [Int] = []
        for item in items {
            guard case let .int(n) = item, n >= 0 else {
                let shown = if case let .int(n) = item { String(n) } else { "a \(item.kind)" }
                throw fail("tensor \(what) holds \(shown), not a non-negative integer")
            }
            out.append(n)
        }
        return out
    }

    func tensor(_ a: [PickleValue]) throws(PickleError) -> TorchTensorRef {
        guard case let .storage(storage) = a[0] else { throw fail("_rebuild_tensor_v2 of a \(a[0].kind), not a storage") }
        guard case let .int(offset) = a[1], offset >= 0 else { throw fail("tensor storage offset is not a non-negative integer") }
        let shape = try intTuple(a[2], "size")
        let strides = try intTuple(a[3], "stride")
        guard shape.count == strides.count else { throw fail("tensor size has \(shape.count) dimensions but stride has \(strides.count)") }
        // Overflow-check the element count and the span of the view once, here.
        var count = 1, span = 1
        for (size, stride) in zip(shape, strides) {
            let (c, o1) = count.multipliedReportingOverflow(by: size)
            let (s, o2) = max(size - 1, 0).multipliedReportingOverflow(by: stride)
            let (t, o3) = span.addingReportingOverflow(s)
            guard !o1, !o2, !o3 else { throw fail("tensor size \(shape) with stride \(strides) overflows") }
            count = c; span = t
        }
        guard storage.dtype.byteCount(elements: count) != nil, !offset.addingReportingOverflow(span).overflow else {
            throw fail("tensor size \(shape) with stride \(strides) overflows")
        }
        return TorchTensorRef(storage: storage, offset: offset, shape: shape, strides: strides)
    }
}

/// Pickle opcode bytes (CPython `Lib/pickle.py`) and names for error messages.
enum Opcode {
    static let mark = UInt8(ascii: "("), stop = UInt8(ascii: "."), binInt = UInt8(ascii: "J")
    static let binInt1 = UInt8(ascii: "K"), binInt2 = UInt8(ascii: "M"), none = UInt8(ascii: "N")
    static let binPersId = UInt8(ascii: "Q"), reduce = UInt8(ascii: "R"), binString = UInt8(ascii: "T")
    static let shortBinString = UInt8(ascii: "U"), binUnicode = UInt8(ascii: "X"), append = UInt8(ascii: "a")
    static let build = UInt8(ascii: "b"), global = UInt8(ascii: "c"), emptyDict = UInt8(ascii: "}")
    static let appends = UInt8(ascii: "e"), binGet = UInt8(ascii: "h"), longBinGet = UInt8(ascii: "j")
    static let emptyList = UInt8(ascii: "]"), binPut = UInt8(ascii: "q"), longBinPut = UInt8(ascii: "r")
    static let setItem = UInt8(ascii: "s"), tuple = UInt8(ascii: "t"), emptyTuple = UInt8(ascii: ")")
    static let setItems = UInt8(ascii: "u"), binFloat = UInt8(ascii: "G"), binBytes = UInt8(ascii: "B")
    static let shortBinBytes = UInt8(ascii: "C")
    static let proto: UInt8 = 0x80, tuple1: UInt8 = 0x85, tuple2: UInt8 = 0x86, tuple3: UInt8 = 0x87
    static let newTrue: UInt8 = 0x88, newFalse: UInt8 = 0x89, long1: UInt8 = 0x8a, long4: UInt8 = 0x8b
    static let shortBinUnicode: UInt8 = 0x8c, binUnicode8: UInt8 = 0x8d, binBytes8: UInt8 = 0x8e
    static let emptySet: UInt8 = 0x8f, addItems: UInt8 = 0x90, frozenSet: UInt8 = 0x91
    static let stackGlobal: UInt8 = 0x93, memoize: UInt8 = 0x94, frame: UInt8 = 0x95

    static let names: [UInt8: String] = [
        0x28: "MARK", 0x2e: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT",
        0x4a: "BININT", 0x4b: "BININT1", 0x4c: "LONG", 0x4d: "BININT2", 0x4e: "NONE", 0x50: "PERSID",
        0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING",
        0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT",
        0x7d: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET", 0x69: "INST", 0x6a: "LONG_BINGET",
        0x6c: "LIST", 0x5d: "EMPTY_LIST", 0x6f: "OBJ", 0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
        0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
        0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
        0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4",
        0x42: "BINBYTES", 0x43: "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8",
        0x8e: "BINBYTES8", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
        0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
        0x98: "READONLY_BUFFER",
    ]

    static func name(_ op: UInt8) -> String {
        let hex = "0x" + String(op, radix: 16, uppercase: false)
        return names[op].map { "\($0) (\(hex))" } ?? hex
    }
}
