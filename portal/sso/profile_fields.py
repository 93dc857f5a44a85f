"""The profile-field vocabulary: which member fields a provider's profile maps onto, and how."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Matches an existing local account on the value (see DESIGN.md, account resolution): only a
#: value that is unique per account, the Email Address or the Username, can do that.
CAN_UPGRADE = "can_upgrade"
#: A missing value fails the sign-in; a supplied one is locked (the member can't edit it here).
MUST_SUPPLY = "must_supply"
#: Per-row options of a profile parameter, and their labels as the admin form shows them.
PARAM_OPTIONS: dict[str, str] = {
    CAN_UPGRADE: "User can upgrade from this field",
    MUST_SUPPLY: "Provider must supply this value",
}


@dataclass(frozen=True)
class ProfileField:
    """One member field a provider's profile may supply."""

    key: str
    #: Visible label, as the admin form and the member's pages show it.
    label: str
    #: The options its row offers (keys of ``PARAM_OPTIONS``), only where they do something.
    #: An option a field does not offer is never shown, saved, exported or read.
    options: tuple[str, ...] = ()
    #: Asked for on *Complete your profile* when the provider omits it.
    account: bool = False
    #: Where a new system looks for it (the OpenID Connect claim).
    default_path: str = ""
    #: A new system starts with *Provider must supply this value* ticked: the webcast
    #: platform's document names userId, firstName, lastName and email as the minimum fields.
    supplied_by_default: bool = False


_TABLE: tuple[ProfileField, ...] = (
    # Always required (the engine refuses a sign-in without it), so it offers no option.
    ProfileField("user_id", "User ID", default_path="sub"),
    ProfileField("username", "Username", options=(CAN_UPGRADE, MUST_SUPPLY), account=True),
    ProfileField(
        "email",
        "Email Address",
        options=(CAN_UPGRADE, MUST_SUPPLY),
        account=True,
        default_path="email",
        supplied_by_default=True,
    ),
    # Names are not unique per account: no local account can be matched, or upgraded, on them.
    ProfileField(
        "first_name",
        "First Name",
        options=(MUST_SUPPLY,),
        account=True,
        default_path="given_name",
        supplied_by_default=True,
    ),
    ProfileField(
        "last_name",
        "Last Name",
        options=(MUST_SUPPLY,),
        account=True,
        default_path="family_name",
        supplied_by_default=True,
    ),
    ProfileField("membership_status", "Membership Status"),
    ProfileField("membership_type", "Membership Type"),
    ProfileField("groups", "Groups"),
)

#: Profile fields, in form order: (key, label).
PROFILE_FIELDS: tuple[tuple[str, str], ...] = tuple((f.key, f.label) for f in _TABLE)
FIELD_LABEL: dict[str, str] = dict(PROFILE_FIELDS)
#: The options each field's row offers, in ``PARAM_OPTIONS`` order.
FIELD_OPTIONS: dict[str, tuple[str, ...]] = {
    f.key: tuple(option for option in PARAM_OPTIONS if option in f.options) for f in _TABLE
}
#: Fields that take at least one option.
OPTION_FIELDS: tuple[str, ...] = tuple(f.key for f in _TABLE if f.options)
#: Fields a local account may be upgraded from (*User can upgrade from this field*).
UPGRADE_FIELDS: tuple[str, ...] = tuple(f.key for f in _TABLE if CAN_UPGRADE in f.options)
#: Fields that take *Provider must supply this value* (User ID is always required).
MUST_SUPPLY_FIELDS: tuple[str, ...] = tuple(f.key for f in _TABLE if MUST_SUPPLY in f.options)
#: Fields a new system marks *Provider must supply this value*.
SUPPLIED_BY_DEFAULT: tuple[str, ...] = tuple(
    f.key for f in _TABLE if f.supplied_by_default and MUST_SUPPLY in f.options
)
#: Account fields a member is asked for on *Complete your profile* when the provider omits them.
ACCOUNT_FIELDS: tuple[str, ...] = tuple(f.key for f in _TABLE if f.account)
#: Where a new system looks for each field.
DEFAULT_PARAM_PATHS: dict[str, str] = {f.key: f.default_path for f in _TABLE if f.default_path}


def param_options(key: str, given: Mapping[str, Any]) -> dict[str, bool]:
    """Return every option of field ``key`` as a flag: those it does not offer are always off."""
    offered = FIELD_OPTIONS[key]
    return {option: bool(given.get(option)) and option in offered for option in PARAM_OPTIONS}


def default_param_values() -> dict[str, dict[str, Any]]:
    """Return the profile parameters a new system starts from: paths and options."""
    return {
        f.key: {
            "path": f.default_path,
            CAN_UPGRADE: False,
            MUST_SUPPLY: f.key in SUPPLIED_BY_DEFAULT,
        }
        for f in _TABLE
    }


@dataclass(frozen=True)
class ProfileParam:
    """Where one profile field is found, and its options."""

    path: str
    can_upgrade: bool = False
    must_supply: bool = False
