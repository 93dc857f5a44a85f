"""Forms of the export and import screens."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, PasswordField, SubmitField

from portal.sso.fields import LABELS


class ImportForm(FlaskForm):
    """Upload an exported configuration, with the Client Secret it does not carry."""

    file = FileField(
        "Configuration file (JSON)", validators=[FileRequired("Choose the exported JSON file.")]
    )
    # Write-only, as on the edit form: never rendered back into the page.
    client_secret = PasswordField(
        LABELS["client_secret"], render_kw={"value": "", "autocomplete": "new-password"}
    )
    replace = BooleanField("Replace the existing system with the same Name")
    submit = SubmitField("Import")
