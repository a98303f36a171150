"""The seed's (2.13) example part options (its options.rst), plus pre/post
commands: shared by the recipe test (what the scripts get baked) and the
end-to-end test (what they then do)."""

SEED_EXAMPLE_OPTIONS = """\
location = ${buildout:directory}/myproject
keep = 3
full = true
debug = true
snapshotlocation = snap/my
gzip = false
enable_snapshotrestore = false
pre_command = echo 'Can I have a backup?'
post_command =
    echo 'Thanks a lot for the backup.'
    echo 'We are done.'
"""
