"""Probes that read the kernel over netlink (struct-decoded dumps, nldump.py): interfaces,
qdiscs, classes, sockets, routes, neighbours.

Netlink answers for the network namespace of the socket, so these probes read
the live kernel only; a captured tree has just /proc and /sys (the link probe
then falls back to /proc/net/dev and /sys/class/net).
"""
