"""Guest networking helpers: namespaces (`netns`), devices (`links`), veth pairs (`veth`),
netkit (`netkit`, a pyroute2 link-kind plugin), the netdev genl family (`genl`), socket
pairs of every kind with exact I/O (`sockets`), packet-level helpers (`packets`)."""
