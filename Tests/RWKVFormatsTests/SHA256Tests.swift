import Testing
import CKernels
import RWKVFormats

@Suite struct SHA256Tests {
    // Test vectors from FIPS 180-4 examples / NIST CSRC "SHA256.pdf" and the common empty-string digest.
    @Test func knownVectors() {
        #expect(SHA256.hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex(SHA256.hash(Array("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".utf8)))
                == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
    }

    @Test func millionAs() {
        #expect(SHA256.hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Feeding the same bytes in pieces that straddle block boundaries gives the same digest.
    @Test func chunkedUpdatesMatchOneShot() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let whole = SHA256.hash(data)
        for split in [1, 55, 56, 63, 64, 65, 127, 500] {
            var h = SHA256()
            var i = 0
            while i < data.count {
                let end = min(data.count, i + split)
                h.update(Array(data[i..<end]))
                i = end
            }
            #expect(h.finalize() == whole, "pieces of \(split)")
        }
    }

    /// The SHA-extension path (used when the CPU has it) and the portable path agree.
    @Test func extensionAndPortablePathsAgree() {
        let data = (0..<64 * 1000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
        var a: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        var b = a
        csha256_compress(&a, data, 1000)
        csha256_compress_portable(&b, data, 1000)
        #expect(a == b)
    }
}
