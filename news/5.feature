The generated scripts (``bin/backup``, ``fullbackup``, ``snapshotbackup``, ``zipbackup``, ``restore``,
``snapshotrestore``, ``ziprestore``, ``altrestore``) now back up and restore for real with the built-in repozo and blob
engines: no ``bin/repozo``, rsync or tar is needed, and an empty ``PATH`` works. Repositories stay interchangeable with
ZODB's ``repozo``. After each backup only the newest ``keep`` full filestorage backups and their increments are kept;
only repozo's own files are removed, chosen by the timestamp in their names (6.0 removed every older file in the
directory, by modification time). A restore date selects the filestorage and the blobs with the same normalised
``YYYY-MM-DD-HH-MM-SS`` value, and every restored filestorage file is checked against its ``.dat`` checksum. See
`issue 5`. [wire]
