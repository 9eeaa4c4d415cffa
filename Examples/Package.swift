// swift-tools-version:6.0
import PackageDescription

// A package that uses rwkv-tools as a library, as an app would: by path here (in CI), by URL and
// version elsewhere (`.package(url: "https://github.com/…/rwkv-tools", from: "…")`).
let package = Package(
    name: "rwkv-example",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "rwkv-tools", path: "..")],
    targets: [
        .executableTarget(name: "rwkv-example", dependencies: [
            .product(name: "RWKVFormats", package: "rwkv-tools"),
            .product(name: "RWKVModel", package: "rwkv-tools"),
            .product(name: "RWKVConvert", package: "rwkv-tools"),
        ]),
    ]
)
