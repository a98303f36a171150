"""``python -m collective.recipe.backup``: the ``zodb-backup`` command."""

from collective.recipe.backup.zodb_backup import main_entry


if __name__ == "__main__":
    main_entry()
