"""The profile-field vocabulary: which member fields a provider's profile maps onto, and how."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProfileField:
    """One member field a provider's profile may supply."""

    key: str
    #: Visible label, as the admin form and the member's pages show it.
    label: str
    #: Takes the *can upgrade* and *must supply* options.
    options: bool = False
    #: Asked for on *Complete your profile* when the provider omits it.
    account: bool = False
    #: Where a new system looks for it (the OpenID Connect claim).
    default_path: str = ""


_TABLE: tuple[ProfileField, ...] = (
    ProfileField("user_id", "User ID", options=True, default_path="sub"),
    ProfileField("username", "Username", options=True, account=True),
    ProfileField("email", "Email Address", options=True, account=True, default_path="email"),
    ProfileField("first_name", "First Name", options=True, account=True, default_path="given_name"),
    ProfileField("last_name", "Last Name", options=True, account=True, default_path="family_name"),
    ProfileField("membership_status", "Membership Status"),
    ProfileField("membership_type", "Membership Type"),
    ProfileField("groups", "Groups"),
)

#: Profile fields, in form order: (key, label).
PROFILE_FIELDS: tuple[tuple[str, str], ...] = tuple((f.key, f.label) for f in _TABLE)
FIELD_LABEL: dict[str, str] = dict(PROFILE_FIELDS)
#: Fields that take the *can upgrade* and *must supply* options.
OPTION_FIELDS: tuple[str, ...] = tuple(f.key for f in _TABLE if f.options)
#: Account fields a member is asked for on *Complete your profile* when the provider omits them.
ACCOUNT_FIELDS: tuple[str, ...] = tuple(f.key for f in _TABLE if f.account)
#: Where a new system looks for each field.
DEFAULT_PARAM_PATHS: dict[str, str] = {f.key: f.default_path for f in _TABLE if f.default_path}

#: Per-row options of a profile parameter, and their labels as the admin form shows them.
PARAM_OPTIONS: dict[str, str] = {
    "can_upgrade": "User can upgrade from this field",
    "must_supply": "Provider must supply this value",
}


@dataclass(frozen=True)
class ProfileParam:
    """Where one profile field is found, and its options."""

    path: str
    can_upgrade: bool = False
    must_supply: bool = False
