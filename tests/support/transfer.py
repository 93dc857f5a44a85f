"""Constants of the export/import tests."""

from portal.models import AuthSystem, ProfileParamRow
from portal.models.group import GroupMappingSettings, GroupRule

#: A client secret distinctive enough to search downloads, output and rows for.
SECRET = 'Transfer-Secret-4Kz8+/=&"end'
#: Tables an import writes to.
WRITTEN = (AuthSystem, ProfileParamRow, GroupMappingSettings, GroupRule)
