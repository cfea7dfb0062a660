#!/usr/bin/env python3
"""Pack host files into a docker-archive image tarball (no Docker, no registry needed).

Every ELF file that goes in brings its shared-library closure (from ldd) along, at the same paths.
The image gets a minimal /etc/passwd and /etc/group: root, tulle-proxy (uid 2110), nonroot (65532).

  mkimage.py --name localhost/tulle/app:0.1.0 --out app.tar --entrypoint /usr/local/bin/app \
      --file target/release/app:/usr/local/bin/app --file /usr/sbin/xtables-nft-multi \
      --symlink /usr/sbin/iptables=xtables-nft-multi --env RUST_LOG=info --user 65532
"""
import argparse, hashlib, io, json, os, re, subprocess, sys, tarfile, tempfile

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\ntulle-proxy:x:2110:2110:tulle-proxy:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\ntulle-proxy:x:2110:\nnonroot:x:65532:\n"


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def ldd_closure(path):
    """Absolute paths of the shared libraries (and loader) a dynamic ELF file needs; [] if static."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0:  # "not a dynamic executable"
        return []
    libs = []
    for line in out.stdout.splitlines():
        if "not found" in line:
            sys.exit(f"mkimage: {path} needs a library that is not on this host: {line.strip()}")
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.GNU_FORMAT)
        self.seen = set()

    def _info(self, name, typ, mode):
        ti = tarfile.TarInfo(name.lstrip("/"))
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = typ, mode, 0, 0, 0
        return ti

    def dir(self, path, mode=0o755):
        path = path.rstrip("/")
        if not path or path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self.tar.addfile(self._info(path, tarfile.DIRTYPE, mode))

    def data(self, path, data, mode=0o644):
        if path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        ti = self._info(path, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.tar.addfile(ti, io.BytesIO(data))

    def symlink(self, path, target):
        if path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        ti = self._info(path, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.tar.addfile(ti)

    def host_file(self, src, dest=None):
        """Add a host file (symlinks resolved) or directory tree at dest, plus ELF closures."""
        dest = dest or src
        if os.path.isdir(src):
            for root, _dirs, files in os.walk(src):
                rel = os.path.relpath(root, src)
                self.dir(os.path.normpath(os.path.join(dest, rel)))
                for f in files:
                    self.host_file(os.path.join(root, f), os.path.normpath(os.path.join(dest, rel, f)))
            return
        real = os.path.realpath(src)
        with open(real, "rb") as f:
            data = f.read()
        self.data(dest, data, os.stat(real).st_mode & 0o7777)
        if is_elf(real):
            for lib in ldd_closure(real):
                self.host_file(lib)

    def close(self):
        self.tar.close()
        return self.buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="fully qualified name:tag, e.g. localhost/tulle/x:0.1.0")
    ap.add_argument("--out", required=True)
    ap.add_argument("--file", "--with", dest="file", action="append", default=[], help="SRC[:DEST] host file or directory (ELF files bring their ldd closure)")
    ap.add_argument("--symlink", action="append", default=[], help="PATH=TARGET")
    ap.add_argument("--entrypoint", nargs="+", default=None)
    ap.add_argument("--cmd", nargs="+", default=None)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--user", default=None, help="uid[:gid] the image runs as by default")
    a = ap.parse_args()
    name = a.name
    if ":" not in name.rsplit("/", 1)[-1] or name.endswith(":latest") or "/" not in name:
        sys.exit(f"mkimage: use a fully qualified name with a non-latest tag, not {name!r}")

    layer = Layer()
    for d in ("/tmp", "/proc", "/sys", "/dev", "/etc", "/run", "/var/run", "/home/nonroot"):
        layer.dir(d, 0o1777 if d == "/tmp" else 0o755)
    layer.data("/etc/passwd", PASSWD.encode())
    layer.data("/etc/group", GROUP.encode())
    layer.data("/etc/nsswitch.conf", b"hosts: files dns\n")
    for spec in a.file:
        src, _, dest = spec.partition(":")
        if not os.path.exists(src):
            sys.exit(f"mkimage: {src} does not exist")
        layer.host_file(os.path.abspath(src), dest or None)
    for spec in a.symlink:
        path, _, target = spec.partition("=")
        layer.symlink(path, target)
    blob = layer.close()
    diff_id = "sha256:" + hashlib.sha256(blob).hexdigest()

    cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env}
    if a.entrypoint:
        cfg["Entrypoint"] = a.entrypoint
    if a.cmd:
        cfg["Cmd"] = a.cmd
    if a.user:
        cfg["User"] = a.user
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": cfg,
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                         "history": [{"created_by": "cluster/image"}]}, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": ["layer/layer.tar"]}]).encode()

    tmp = tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(a.out)), delete=False)
    with tarfile.open(fileobj=tmp, mode="w") as out:
        for n, d in (("layer/layer.tar", blob), (config_name, config), ("manifest.json", manifest)):
            ti = tarfile.TarInfo(n)
            ti.size, ti.mtime, ti.mode = len(d), 0, 0o644
            out.addfile(ti, io.BytesIO(d))
    tmp.close()
    os.replace(tmp.name, a.out)
    print(f"{name} -> {a.out} ({len(blob) // 1024} KiB)")


if __name__ == "__main__":
    main()
