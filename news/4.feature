Blob backups and restores no longer run rsync or tar: hard-link snapshots, copies, tar, tar.gz and GNU-compatible
incremental archives are made natively and in parallel, keeping the 6.0 layout. Backups are built under a temporary
name, so an interrupted backup is redone; any failure is an error naming the path; blob directories with dots,
spaces or unicode in their names work; restore accepts a differently named target, restores archives even with
``archive_blob = false``, refuses an incremental chain without its full archive, and replaces the live blobstorage
only once the restored tree is complete. See `issue 4`. [blobs]
