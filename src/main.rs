fn main() {
    // The CLI is wired in at integration.
}
