"""DNS for a Mailu stack, I/O part: providers (Cloudflare, RFC 2136) and authoritative propagation checks."""
