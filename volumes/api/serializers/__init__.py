"""Input validation and output shapes of the REST API, one module per resource (as the views)."""
from .fields import StrictBooleanField, StrictCharField, StrictFloatField, StrictIntegerField
from .volumes import (
    AccessSerializer, DuplicateSerializer, LeaseInfoSerializer, QuotaSerializer, TrashedVolumeSerializer,
    UsageSerializer, VOLUME_NAME_PATTERN, VolumeCreateSerializer, VolumeNameField, VolumeSerializer,
)
from .files import (
    ChangeSerializer, EntrySerializer, FolderCreateSerializer, FolderSerializer, MoveSerializer,
    VOLUME_PATH_PATTERN, VolumePathField,
)
from .history import CommitSerializer, HealthSerializer, ProblemSerializer, PruneSerializer, PrunedSerializer
from .shares import (
    ACCESS_LEVELS, SHARE_GRANT, SHARE_REVOKE, ShareGrantSerializer, ShareRevokeSerializer, ShareSerializer,
    principal_schema,
)
from .jobs import (
    JobCreateSerializer, JobDetailSerializer, JobLogPageSerializer, JobMountSerializer, JobSerializer,
    NoNulTextField,
)
from .agent import (
    AcquireSerializer, BlobUrlsSerializer, ClaimSerializer, CommitBatchSerializer, CommitInputSerializer,
    CommitVolumeSerializer, FiguresSerializer, FinishSerializer, JobSpecSerializer, LeaseSerializer,
    LogSerializer, ManifestPartsSerializer, MissingSerializer, MountPlanSerializer, NO_NUL, PinIdSerializer,
    PinInputSerializer, PinSerializer, PresignedSerializer, ScriptEventSerializer, StatusSerializer, TokenSerializer,
    WholeNumberField,
)
from .storages import StorageSerializer, StorageTestSerializer, StorageUpdateSerializer, StorageWriteSerializer
