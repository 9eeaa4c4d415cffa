import Foundation
import Testing
@testable import RWKVFormats

/// Pickle bytes spelled out opcode by opcode (CPython Lib/pickle.py names).
enum P {
    static let proto2: [UInt8] = [0x80, 2]
    static let mark: [UInt8] = [0x28], stop: [UInt8] = [0x2e], reduce: [UInt8] = [0x52]
    static let emptyTuple: [UInt8] = [0x29], emptyList: [UInt8] = [0x5d], emptyDict: [UInt8] = [0x7d]
    static let tuple: [UInt8] = [0x74], append: [UInt8] = [0x61], setItems: [UInt8] = [0x75]
    static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
    static func string(_ s: String) -> [UInt8] { [0x58] + le32(UInt32(s.utf8.count)) + Array(s.utf8) }
    static func shortString(_ s: String) -> [UInt8] { [0x8c, UInt8(s.utf8.count)] + Array(s.utf8) }
    static func int(_ v: UInt8) -> [UInt8] { [0x4b, v] }
    static func put(_ i: UInt8) -> [UInt8] { [0x71, i] }
    static func get(_ i: UInt8) -> [UInt8] { [0x68, i] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}

@Suite struct PickleTests {
    func error(_ bytes: [UInt8], limits: Pickle.Limits = Pickle.Limits()) -> PickleError? {
        do { _ = try Pickle.load(bytes, limits: limits); return nil } catch { return error }
    }

    @Test func readsTheValuesTorchPickles() throws {
        // values.pth: every kind of value torch.save puts next to tensors (protocol 2).
        let archive = try TorchArchive(path: torchFixtures + "/values.pth")
        #expect(archive.tensors == [TensorInfo(name: "weight", dtype: .f32, shape: [2, 3])])   // an nn.Parameter
        #expect(archive.nonTensorEntries == ["n (int)", "big (int)", "neg (int)", "f (float)", "s (str)", "b (bytes)",
                                             "none (None)", "l (list)", "t (tuple)", "set (set)", "size (tuple)",
                                             "dtype (torch.float16)", "linear (dict)"])
        let p4 = try TorchArchive(path: torchFixtures + "/protocol4.pth")
        #expect(p4.tensors == [TensorInfo(name: "x", dtype: .i32, shape: [4]), TensorInfo(name: "y", dtype: .bf16, shape: [2, 2])])
        #expect(try p4.floats("x") == [0, 1, 2, 3])
    }

    @Test func decodesScalarsAndContainers() throws {
        // {"a": [1, -2, 2**40, 1.5, b"\x00\xff", None, True], "k": ("x", "x")} with a memoized string.
        var b = P.proto2 + P.emptyDict + P.mark
        b += P.string("a") + P.emptyList + P.mark + P.int(1) + [0x4a] + P.le32(UInt32(bitPattern: -2))
        b += [0x8a, 6, 0, 0, 0, 0, 0, 1]                                            // LONG1 2**40
        b += [0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]                                   // BINFLOAT 1.5
        b += [0x43, 2, 0x00, 0xff, 0x4e, 0x88] + [0x65]                              // SHORT_BINBYTES, NONE, NEWTRUE, APPENDS
        b += P.string("k") + P.string("x") + P.put(0) + P.get(0) + [0x86]            // TUPLE2
        b += P.setItems + P.stop
        let doc = try Pickle.load(b)
        let entries = try #require(doc.entries(doc.root))
        #expect(entries.map(\.key) == [.string("a"), .string("k")])
        #expect(doc.items(entries[0].value) == [.int(1), .int(-2), .int(1 << 40), .float(1.5), .bytes([0, 255]), .none, .bool(true)])
        #expect(doc.items(entries[1].value) == [.string("x"), .string("x")])
    }

    @Test func protocol4Opcodes() throws {
        // PROTO 4, FRAME, SHORT_BINUNICODE + MEMOIZE, STACK_GLOBAL collections.OrderedDict, EMPTY_TUPLE, REDUCE
        var body = P.shortString("collections") + [0x94] + P.shortString("OrderedDict") + [0x94, 0x93, 0x94]
        body += P.emptyTuple + P.reduce + [0x94] + P.shortString("k") + [0x8d] + P.le64(2) + Array("vv".utf8) + [0x73] + P.stop
        let b: [UInt8] = [0x80, 4, 0x95] + P.le64(UInt64(body.count)) + body
        let doc = try Pickle.load(b)
        #expect(doc.entries(doc.root)?.map(\.value) == [.string("vv")])
    }

    @Test func refusesGlobalsThatCanRunCode() {
        let attacks: [(module: String, name: String, symbol: String)] = [
            ("os", "system", "os.system"), ("posix", "system", "posix.system"), ("__builtin__", "eval", "builtins.eval"),
            ("builtins", "exec", "builtins.exec"), ("subprocess", "Popen", "subprocess.Popen"),
            ("torch.jit", "load", "torch.jit.load"), ("torch._C", "_jit_pass_inline", "torch._C._jit_pass_inline"),
            ("copyreg", "_reconstructor", "copyreg._reconstructor"), ("argparse", "Namespace", "argparse.Namespace"),
        ]
        for a in attacks {
            let b = P.proto2 + P.global(a.module, a.name) + P.mark + P.string("echo pwned") + P.tuple + P.reduce + P.stop
            #expect(error(b)?.message == "refusing \(a.symbol): not on the allow-list of tensor-building globals (a pickle global can run code)")
            #expect(error(b)?.offset == 2, "the GLOBAL itself is refused, before anything is called")
        }
        // The same through STACK_GLOBAL (protocol 4).
        let stacked: [UInt8] = [0x80, 4] + P.shortString("os") + P.shortString("system") + [0x93] + P.stop
        #expect(error(stacked)?.message.hasPrefix("refusing os.system") == true)
        // Storage types outside the supported dtypes are named as such.
        #expect(error(P.proto2 + P.global("torch", "ComplexFloatStorage") + P.stop)?.message == "unsupported tensor storage type torch.ComplexFloatStorage")
        // REDUCE on an allowed global that is not callable, or on a non-global.
        #expect(error(P.proto2 + P.global("torch", "FloatStorage") + P.emptyTuple + P.reduce + P.stop)?.message == "torch.FloatStorage is not callable")
        #expect(error(P.proto2 + P.string("os.system") + P.emptyTuple + P.reduce + P.stop)?.message == "REDUCE on a str, not an allow-listed global")
    }

    @Test func capsLengthsBeforeAllocating() {
        // Each length field claims far more than the pickle holds: refused before allocating.
        #expect(error(P.proto2 + [0x58] + P.le32(0xFFFF_FFFF) + P.stop)?.message
                == "BINUNICODE length 4294967295 runs past the end of the pickle (1 bytes left)")
        #expect(error(P.proto2 + [0x8e] + P.le64(1 << 62) + P.stop)?.message
                == "BINBYTES8 length 4611686018427387904 runs past the end of the pickle (1 bytes left)")
        #expect(error(P.proto2 + [0x8d] + P.le64(UInt64.max) + P.stop)?.message
                == "BINUNICODE8 length 18446744073709551615 runs past the end of the pickle (1 bytes left)")
        #expect(error(P.proto2 + [0x42] + P.le32(1_000_000) + [1, 2, 3] + P.stop)?.message
                == "BINBYTES length 1000000 runs past the end of the pickle (4 bytes left)")
        #expect(error(P.proto2 + [0x8b] + P.le32(0x7FFF_FFFF) + P.stop)?.message
                == "LONG4 length 2147483647 runs past the end of the pickle (1 bytes left)")
        #expect(error([0x80, 4, 0x95] + P.le64(1 << 40) + P.stop)?.message
                == "FRAME length 1099511627776 runs past the end of the pickle (1 bytes left)")
        #expect(error(P.proto2 + [0x58, 1, 0])?.message == "BINUNICODE length of 4 bytes runs past the end of the pickle (2 bytes left)")
    }

    @Test func checksMemoStackAndStructure() {
        #expect(error(P.proto2 + P.get(5) + P.stop)?.message == "memo index 5 was never stored")
        #expect(error(P.proto2 + [0x6a] + P.le32(0xFFFF_FFFF) + P.stop)?.message == "memo index 4294967295 was never stored")
        #expect(error(P.proto2 + P.emptyDict + P.int(1))?.message == "pickle ends without a STOP opcode")
        #expect(error([])?.message == "empty pickle")
        #expect(error(P.proto2 + P.stop)?.message == "STOP with an empty stack")
        #expect(error(P.proto2 + P.int(1) + P.int(2) + P.stop)?.message == "STOP with 2 values on the stack")
        #expect(error(P.proto2 + P.int(1) + [0x86] + P.stop)?.message == "TUPLE2 needs 2 values on the stack")
        #expect(error(P.proto2 + P.reduce + P.stop)?.message == "REDUCE on an empty stack")
        #expect(error(P.proto2 + P.emptyDict + P.int(1) + P.int(2) + P.setItems + P.stop)?.message == "SETITEMS without a MARK")
        #expect(error(P.proto2 + P.int(1) + P.mark + P.append + P.stop)?.message == "APPEND on an empty stack",
                "a MARK frame hides the values below it")
        #expect(error(P.proto2 + P.emptyTuple + P.int(1) + P.append + P.stop)?.message == "APPEND into a tuple")
        #expect(error(P.proto2 + P.emptyList + P.emptyDict + [0x62] + P.stop)?.message == "BUILD on a list is not supported")
        #expect(error(P.proto2 + [0x81] + P.stop)?.message == "unsupported pickle opcode NEWOBJ (0x81)")
        #expect(error(P.proto2 + Array("i os\nsystem\n".utf8) + P.stop)?.message == "unsupported pickle opcode INST (0x69)")
        #expect(error([0x80, 9] + P.stop)?.message == "unsupported pickle protocol 9")
        #expect(error(P.proto2 + [UInt8](repeating: 0x28, count: 300) + P.stop)?.message == "MARKs nested deeper than 256")
        var small = Pickle.Limits()
        small.maxValues = 100
        #expect(error(P.proto2 + [UInt8](repeating: 0x5d, count: 101) + P.stop, limits: small)?.message == "pickle builds more than 100 values")
        // A list that contains itself is harmless: containers are indexes, not nested values.
        let cycle = P.proto2 + P.emptyList + P.put(0) + P.get(0) + P.append + P.stop
        #expect(error(cycle) == nil)
    }

    @Test func validatesTensorRebuilds() {
        func rebuild(numel: UInt8 = 6, offset: UInt8 = 0, size: [UInt8] = [2, 3], stride: [UInt8] = [3, 1], storage: String = "FloatStorage") -> [UInt8] {
            var b = P.proto2 + P.global("torch._utils", "_rebuild_tensor_v2") + P.mark
            b += P.mark + P.string("storage") + P.global("torch", storage) + P.string("0") + P.string("cpu") + P.int(numel) + P.tuple + [0x51]
            b += P.int(offset) + P.mark + size.flatMap(P.int) + P.tuple + P.mark + stride.flatMap(P.int) + P.tuple
            b += [0x89] + P.global("collections", "OrderedDict") + P.emptyTuple + P.reduce + P.tuple + P.reduce + P.stop
            return b
        }
        #expect(error(rebuild()) == nil)
        #expect(error(rebuild(size: [2, 3], stride: [1]))?.message == "tensor size has 2 dimensions but stride has 1")
        #expect(error(rebuild(size: [255, 255, 255, 255, 255, 255, 255, 255, 255], stride: [255, 255, 255, 255, 255, 255, 255, 255, 255]))?.message
                == "tensor size [255, 255, 255, 255, 255, 255, 255, 255, 255] with stride [255, 255, 255, 255, 255, 255, 255, 255, 255] overflows")
        // A persistent id that is not a storage tuple.
        let pid = P.proto2 + P.string("storage") + [0x51] + P.stop
        #expect(error(pid)?.message == "persistent id is a str, not a tuple")
    }
}
