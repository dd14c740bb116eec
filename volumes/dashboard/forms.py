"""Dashboard forms: input checks only; every write goes through a service."""
from __future__ import annotations


from django import forms

from .. import annotations, jsonsafe
from ..exceptions import AnnotationError
from ..models import Job, ObjectStorage
from ..storage.factory import CONFIG_KEYS, SECRET_KEYS, _clean

JOB_EXAMPLE = {
    "python": """# volume: demo-data data
# volume: $workspace-cache cache

import os


def main(name: str = "world"):
    # data/ and cache/ are synced back when the job succeeds.
    os.makedirs("data", exist_ok=True)
    with open("data/hello.txt", "a") as f:
        f.write(f"hello {name}\\n")
    return {"files": sorted(os.listdir("data"))}
""",
    "bash": """# volume: demo-data data

mkdir -p data
echo "hello $1" >> data/hello.txt
ls data | wc -l
""",
    "typescript": """// volume: demo-data data

import { appendFileSync, readdirSync } from "node:fs";

export async function main(name: string = "world") {
  appendFileSync("data/hello.txt", `hello ${name}\\n`);
  return { files: readdirSync("data") };
}
""",
    "javascript": """// volume: demo-data data

import { appendFileSync, readdirSync } from "node:fs";

export async function main(name = "world") {
  appendFileSync("data/hello.txt", `hello ${name}\\n`);
  return { files: readdirSync("data") };
}
""",
}


class VolumeCreateForm(forms.Form):
    name = forms.CharField(
        max_length=255,
        help_text="2-255 characters: letters, digits, '.', '_' and '-', starting and ending with a letter or digit.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "training-data"}),
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        try:
            annotations.validate_volume_name(name)
        except AnnotationError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return name


class DuplicateForm(VolumeCreateForm):
    generation = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="From generation")

    def __init__(self, *args, generations: list[tuple[int, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["generation"].choices = generations


class QuotaForm(forms.Form):
    size = forms.CharField(max_length=60, required=False, label="Size limit",
                           widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                                         "placeholder": "10 GB", "inputmode": "text"}))

    def clean_size(self) -> int | None:
        from ..exceptions import InvalidSize
        from ..services.volumes import parse_size

        try:
            return parse_size(self.cleaned_data["size"])
        except InvalidSize as exc:
            raise forms.ValidationError(exc.message) from exc


class ShareForm(forms.Form):
    LEVELS = [("read", "Read-only"), ("write", "Read-write")]

    who = forms.CharField(
        max_length=150, required=False, label="User or group",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "Type a username or group name"}),
    )
    principal = forms.CharField(required=False, widget=forms.HiddenInput)
    level = forms.ChoiceField(choices=LEVELS, initial="read", label="Access")

    def clean(self):
        data = super().clean()
        if not data.get("who") and not data.get("principal"):
            raise forms.ValidationError("Pick a user or group of this workspace to share with.")
        return data


class ShareChangeForm(forms.Form):
    principal = forms.CharField()
    level = forms.ChoiceField(choices=ShareForm.LEVELS + [("remove", "Remove")])


class ConfirmNameForm(forms.Form):
    confirm_name = forms.CharField(
        max_length=255, label="Type the volume's name to confirm",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args, expected: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_confirm_name(self) -> str:
        value = self.cleaned_data["confirm_name"]
        if value != self.expected:
            raise forms.ValidationError("The name does not match; type it exactly as shown (case matters).")
        return value


def _entry_name(value: str) -> str:
    value = value.strip()
    if not value or value in (".", ".."):
        raise forms.ValidationError("Give a name, e.g. 'reports'.")
    if "\x00" in value:
        raise forms.ValidationError("A name cannot contain a NUL character.")
    return value


class FolderForm(forms.Form):
    folder = forms.CharField(required=False, widget=forms.HiddenInput)
    name = forms.CharField(
        max_length=1000, label="Folder name",
        help_text="Use '/' to create nested folders, e.g. 'reports/2024'.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "reports"}),
    )

    def clean_name(self) -> str:
        return _entry_name(self.cleaned_data["name"]).strip("/")


class MoveForm(forms.Form):
    folder = forms.CharField(required=False, widget=forms.HiddenInput)
    src = forms.CharField(widget=forms.HiddenInput)
    dst = forms.CharField(
        max_length=4000, label="New path",
        help_text="The full path inside the volume. Change the last part to rename; change the folders to move.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def clean_dst(self) -> str:
        return _entry_name(self.cleaned_data["dst"]).strip("/")


class JobForm(forms.Form):
    language = forms.ChoiceField(choices=Job.Language.choices, initial="python")
    content = forms.CharField(
        label="Script", widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code"}),
        initial=JOB_EXAMPLE["python"],
    )
    args = forms.CharField(
        label="Arguments (JSON object)", required=False, initial='{"name": "world"}',
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "code"}),
    )

    def __init__(self, *args, workspace_id: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workspace_id = workspace_id

    def clean_args(self) -> dict:
        raw = (self.cleaned_data.get("args") or "").strip()
        if not raw:
            return {}
        try:
            value = jsonsafe.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"This is not valid JSON ({exc}); write an object like {{\"name\": \"world\"}}.")
        if not isinstance(value, dict):
            raise forms.ValidationError('The arguments must be a JSON object, like {"name": "world"}.')
        if jsonsafe.problem(value):
            raise forms.ValidationError(f"These arguments cannot be used: {jsonsafe.problem(value)}.")
        return value

    def clean(self):
        data = super().clean()
        language, content = data.get("language"), data.get("content")
        if language and content and "args" in data:
            # Annotation mistakes are reported here, with their line, before a job is even created.
            try:
                parsed = annotations.parse(content, language)
                annotations.resolve(parsed, self.workspace_id, data["args"])
            except AnnotationError as exc:
                self.add_error("content", str(exc))
        return data


class StorageForm(forms.Form):
    """An object storage: its kind and the configuration fields of that kind."""

    # (config key, label, help); which kinds use a key, and which keys are secret, comes from the factory.
    FIELDS = [
        ("root", "Folder", "An absolute folder on the server, e.g. /srv/volumes."),
        ("bucket", "Bucket", ""),
        ("container", "Container", ""),
        ("prefix", "Key prefix", "Optional folder inside the bucket, container or folder."),
        ("endpoint_url", "Endpoint URL", "Leave empty for AWS; set it for MinIO, Ceph, R2..."),
        ("region", "Region", "e.g. eu-west-1"),
        ("access_key", "Access key id", ""),
        ("secret_key", "Secret access key", ""),
        ("connection_string", "Connection string", "From the storage account's Access keys page; "
                                                   "or give the account name and key instead."),
        ("account_name", "Account name", ""),
        ("account_key", "Account key", ""),
        ("endpoint", "Endpoint", "Leave empty for the cloud service; set it for an emulator."),
        ("project", "Project", ""),
        ("credentials_json", "Service account key (JSON)", "Leave empty to use the server's default credentials."),
    ]

    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "primary"}))
    kind = forms.ChoiceField(choices=ObjectStorage.Kind.choices, initial="filesystem")
    is_primary = forms.BooleanField(required=False, label="Primary storage of this workspace")

    def __init__(self, *args, instance: ObjectStorage | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance
        config = dict(instance.config) if instance else {}
        for key, label, help_text in self.FIELDS:
            kinds = [kind for kind, (req, opt) in CONFIG_KEYS.items() if key in req + opt]
            secret = key in SECRET_KEYS
            widget = forms.PasswordInput(render_value=False) if secret else forms.TextInput()
            if key == "credentials_json":
                widget = forms.Textarea(attrs={"rows": 3})
            widget.attrs.update({"autocomplete": "off", "spellcheck": "false", "data-kinds": " ".join(kinds)})
            if secret and config.get(key):
                widget.attrs["placeholder"] = "•••••• (saved; leave empty to keep)"
            self.fields[f"cfg_{key}"] = forms.CharField(
                label=label, required=False, help_text=help_text, widget=widget,
                initial=None if secret else without_userinfo(config.get(key, "")),
            )
        if instance is not None:
            self.fields["name"].initial = instance.name
            self.fields["kind"].initial = instance.kind
            self.fields["is_primary"].initial = instance.is_primary

    def config_fields(self):
        """The connection fields; those of other kinds than the chosen one are marked hidden, so the
        dialog opens showing one kind's fields (the script shows others when Kind changes)."""
        kind = self["kind"].value() or "filesystem"
        bound = []
        for key, *_ in self.FIELDS:
            field = self[f"cfg_{key}"]
            field.kind_hidden = kind not in field.field.widget.attrs.get("data-kinds", "").split()
            bound.append(field)
        return bound

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if not kind:
            return data
        old = dict(self.instance.config) if self.instance and self.instance.kind == kind else {}
        required, optional = CONFIG_KEYS[kind]
        config: dict[str, str] = {}
        for key in required + optional:
            value = (data.get(f"cfg_{key}") or "").strip()
            if not value and key in SECRET_KEYS and old.get(key):
                value = old[key]  # a saved secret is never shown; empty means keep it
            elif value and old.get(key) and value == without_userinfo(old[key]):
                value = old[key]  # the user:password@ of a saved URL is never shown; unchanged means keep it
            if value:
                config[key] = value
        missing = [key for key in required if not config.get(key)]
        for key in missing:
            self.add_error(f"cfg_{key}", "Required for this kind of storage.")
        if not missing:
            try:
                # Validates the settings without building a client: an SDK may look for the server's own
                # credentials (and ask a metadata address) while it is built. Saving checks the rest.
                _clean(kind, config)
            except ValueError as exc:
                self.add_error(None, f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
        data["config"] = config
        return data


def without_userinfo(value: str) -> str:
    """A URL without its user:password@ (credentials are never rendered back); other text unchanged."""
    from urllib.parse import urlsplit, urlunsplit

    if not isinstance(value, str) or "@" not in value or "://" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if "@" not in parts.netloc:
        return value
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class VolumeStorageForm(forms.Form):
    storage = forms.ModelChoiceField(
        queryset=ObjectStorage.objects.none(), required=False, empty_label="— none (jobs with volumes fail) —",
        label="Volume storage",
    )

    def __init__(self, *args, workspace, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["storage"].queryset = ObjectStorage.objects.filter(workspace=workspace)
        self.fields["storage"].initial = workspace.volume_storage_id
