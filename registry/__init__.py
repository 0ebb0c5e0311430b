"""Persistence and nothing else: tables, sessions and repositories. Imports no other package of the project."""

from registry.accounts import Account, Accounts, ApiKey, Role
from registry.audit import AuditEvent, AuditLog, AuditTree
from registry.faces import (FaceIndexState, FaceTemplate, FaceTemplates, ProtectedPerson, ProtectedPersons,
                            SubjectKind)
from registry.cameos import (AppearanceKind, Appearances, Cameo, CameoAppearance, CameoApproval, CameoChallenge,
                             Cameos, CameoStatus, Challenges, Visibility)
from registry.database import Database
from registry.errors import Conflict, DatabaseUnavailable, NotFound, RegistryError
from registry.generations import Generation, Generations, Status, new_watermark_payload
from registry.works import (Licence, NewWork, RegistryRevision, Work, WorkAlias, WorkDescription, WorkImage,
                             WorkKind, WorkMode, WorkRecord, Works)

__all__ = [
    "Account", "Accounts", "ApiKey", "AppearanceKind", "Appearances", "AuditEvent", "AuditLog", "AuditTree", "Cameo",
    "CameoAppearance", "CameoApproval", "CameoChallenge", "CameoStatus", "Cameos", "Challenges", "Conflict",
    "Database", "DatabaseUnavailable", "FaceIndexState", "FaceTemplate", "FaceTemplates", "Generation",
    "Generations", "Licence", "NewWork", "NotFound", "ProtectedPerson", "ProtectedPersons", "RegistryError",
    "RegistryRevision", "Role", "Status", "SubjectKind", "Visibility", "Work", "WorkAlias", "WorkDescription",
    "WorkImage", "WorkKind", "WorkMode", "WorkRecord", "Works", "new_watermark_payload",
]
