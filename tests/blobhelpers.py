"""Helpers of the blob tests: synthetic blob trees, tree snapshots to
compare, and the rsync/tar commands collective.recipe.backup 6.0 ran
(see docs/blobs.rst), run here as argument lists (no shell)."""

import hashlib
import os
import random
import stat
import subprocess


def oid_path(oid):
    """The bushy-layout directory of an oid (see docs/blobs.rst)."""
    return os.path.join(*[f"0x{b:02x}" for b in oid.to_bytes(8, "big")])


def make_blobtree(path, oids=range(1, 40), seed=1, tid_base=0x03E0000000000000, extras=True):
    """A bushy blob tree like ZODB makes: `.layout`, read-only 0444 blob
    files, a `tmp/` with an upload, optionally a symlink and odd names."""
    rnd = random.Random(seed)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, ".layout"), "w") as f:
        f.write("bushy")
    os.makedirs(os.path.join(path, "tmp"), exist_ok=True)
    with open(os.path.join(path, "tmp", "BUCabc"), "wb") as f:
        f.write(b"uncommitted")
    t = 1_700_000_000
    for oid in oids:
        add_blob(path, oid, tid_base + oid, rnd.randbytes(rnd.randint(0, 5000)), mtime=t + oid)
    if extras:
        with open(os.path.join(path, "name with spaces.txt"), "w") as f:
            f.write("spaces")
        with open(os.path.join(path, "ünïcødé.blob"), "w") as f:
            f.write("unicode")
        os.symlink(".layout", os.path.join(path, "link-to-layout"))
        os.utime(os.path.join(path, "link-to-layout"), (t, t), follow_symlinks=False)
    age_dirs(path)
    return path


def age_dirs(root, when=1_750_000_000):
    """Give every directory an mtime in the past. rsync does not set a
    directory's mtime that falls in the second the copy is made (it finds
    the new directory "already" right at one-second resolution), so trees
    made just before a reference rsync run would differ by that artefact."""
    for i, (dirpath, _, _) in enumerate(sorted(os.walk(root))):
        os.utime(dirpath, ns=(when * 10**9, when * 10**9 + i * 1_000_003))


def add_blob(root, oid, tid, data, mtime=None):
    d = os.path.join(root, oid_path(oid))
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f"0x{tid:016x}.blob")
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, 0o444)
    if mtime is not None:
        os.utime(p, (mtime, mtime))
    return p


def state(root, exclude_top=("tmp", ".removed"), mtimes=True):
    """{relpath: (kind, mode, mtime_ns, size, content-hash or link)} of a
    tree; directories' mtimes included."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in exclude_top]
            filenames = [f for f in filenames if f not in exclude_top]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(p)
            mt = st.st_mtime_ns if mtimes else None
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", None, None, None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), mt, None, None)
            else:
                with open(p, "rb") as f:
                    digest = hashlib.md5(f.read()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), mt, st.st_size, digest)
    return out


def inodes(root):
    """{relpath: inode} of the regular files under root."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out[os.path.relpath(p, root)] = st.st_ino
    return out


def shared(a, b):
    """Relpaths whose files in trees a and b are the same inode."""
    ia, ib = inodes(a), inodes(b)
    return {k for k in ia if k in ib and ia[k] == ib[k]}


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def rsync_backup(blobdir, dest, prev=None, exclude_transient=True):
    """6.0's rsync command for a directory backup (see docs/blobs.rst)."""
    base = os.path.basename(os.path.normpath(blobdir))
    cmd = ["rsync", "-a"]
    if exclude_transient:
        cmd += [f"--exclude=/{base}/tmp", f"--exclude=/{base}/.removed"]
    if prev is not None:
        cmd += ["--delete", f"--link-dest={os.path.relpath(prev, dest)}"]
    run(*cmd, os.path.normpath(blobdir), dest)


def rsync_restore(backup_dir, blobdir):
    """6.0's directory restore: mirror <backup>/<base> onto the parent."""
    base = os.path.basename(os.path.normpath(blobdir))
    run(
        "rsync",
        "-a",
        "--delete",
        os.path.join(backup_dir, base),
        os.path.dirname(os.path.normpath(blobdir)),
    )


def tar_backup(blobdir, dest, compress=False, snar=None):
    """6.0's tar command (see docs/blobs.rst)."""
    cmd = ["tar", "czf" if compress else "cf", dest]
    if snar is not None:
        cmd.append(f"--listed-incremental={snar}")
    run(*cmd, "-C", blobdir, ".")


def tar_restore(archives, blobdir):
    """6.0's archive restore: fresh dir, then `tar x[z]f f [--incremental]`."""
    os.makedirs(blobdir, exist_ok=True)
    for a in archives:
        cmd = ["tar", "xzf" if str(a).endswith("gz") else "xf", a]
        if len(archives) > 1:
            cmd.append("--incremental")
        run(*cmd, "-C", blobdir)
