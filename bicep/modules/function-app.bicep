metadata name = 'dipguard lookup function app'
metadata description = 'A Linux Elastic Premium plan and the lookup function app on it, which answers IVR data dips (DIPGUARD_FUNCTIONS=lookup), with always-ready and pre-warmed instances, inbound traffic limited to API Management by network rules and by App Service Authentication, the runtime\'s /admin endpoints off, and no role on the control plane: the operator app (operator-app.bicep) holds those.'

@description('Required. Name of the function app.')
param name string

@description('Required. Name of the Elastic Premium plan.')
param planName string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Value of the azd-service-name tag, which must match the service name in azure.yaml.')
param azdServiceName string = 'api'

// --- plan and scale ---

@description('Optional. Elastic Premium size: EP1 (1 vCPU, 3.5 GB), EP2 (2 vCPU, 7 GB), EP3 (4 vCPU, 14 GB).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Optional. Python worker processes on each instance (FUNCTIONS_WORKER_PROCESS_COUNT); one per vCPU of planSku is the usual choice.')
@minValue(1)
@maxValue(10)
param workerProcessCount int = 1

@description('Optional. Plan maximum burst: the most instances the plan may scale out to. At most maxBurstLimit.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

// Linux Elastic Premium allows a maximum burst of 20 in many regions and 100 in others
// (learn.microsoft.com/azure/azure-functions/functions-premium-plan, region table).
@description('Optional. The region\'s Linux Elastic Premium maximum burst (20 in most regions, 100 in some). maximumElasticWorkerCount may not exceed it, and the app holds every schedule maxBurst to it (SCALE_MAX_BURST_LIMIT).')
@minValue(1)
@maxValue(100)
param maxBurstLimit int = 20

@description('Optional. Spread the plan across availability zones. Needs at least 3 always-ready instances.')
param zoneRedundant bool = false

@description('Optional. Always-ready instances (site config minimumElasticInstanceCount): warm and billed all the time. The scale_schedule timer raises and lowers it at run time; a redeploy resets it to this value.')
@minValue(1)
@maxValue(20)
param alwaysReadyInstanceCount int = 1

@description('Optional. Pre-warmed buffer instances (site config preWarmedInstanceCount) kept ready ahead of each scale-out step: 0 to 10, the bounds of Azure\'s published types for Microsoft.Web/sites/config (API 2024-11-01).')
@minValue(0)
@maxValue(10)
param preWarmedInstanceCount int = 1

@description('Optional. Per-app scale-out limit (site config functionAppScaleLimit); 0 means up to the plan maximum burst.')
@minValue(0)
@maxValue(100)
param functionAppScaleLimit int = 0

// A zone-redundant plan keeps instances in three zones, and ARM rejects fewer than three
// always-ready instances on it. Fail the deployment up front with a message that says so:
// int() of a non-number is an error that ARM reports at validation time (and in what-if).
var alwaysReadyChecked = (zoneRedundant && alwaysReadyInstanceCount < 3) ? int('zoneRedundant requires alwaysReadyInstanceCount of at least 3') : alwaysReadyInstanceCount
// Likewise a burst above the region's limit, which ARM would refuse only once the plan is
// being written.
var maximumElasticWorkerCountChecked = (maximumElasticWorkerCount > maxBurstLimit) ? int('maximumElasticWorkerCount is above maxBurstLimit, the region\'s Elastic Premium maximum burst') : maximumElasticWorkerCount

// --- dependencies ---

@description('Required. Name of the storage account the Functions host uses (AzureWebJobsStorage, content share).')
param hostStorageAccountName string

@description('Required. Name of the Azure Files share in the host storage account that holds the app content.')
param contentShareName string

@description('Required. Table service endpoint of the customer data account (CustomerStorage__tableServiceUri).')
param customerTableServiceUri string

@description('Required. Redis URL without secrets, for example rediss://<host>:10000/0 (Entra ID token auth).')
param redisUrl string

@description('Optional. The Redis database runs the OSS cluster policy, so the app connects cluster-aware.')
param redisCluster bool = false

@description('Required. Application Insights connection string.')
param appInsightsConnectionString string

@description('Optional. Static public IP addresses of a classic-tier API Management gateway. Give these or apimSubnetResourceId.')
param apimPublicIpAddresses array = []

@description('Optional. Subnet a StandardV2 API Management gateway calls from (outbound virtual network integration, with the Microsoft.Web service endpoint). Give this or apimPublicIpAddresses.')
param apimSubnetResourceId string = ''

// --- network (the operator app takes the same values: both sit on one plan and share the content share) ---

@description('Optional. Subnet (delegated to Microsoft.Web/serverFarms) the app integrates with; all its outbound traffic, the content share\'s and Key Vault references\' included, then goes through the virtual network to the private endpoints. Empty: no virtual network integration (dev).')
param virtualNetworkSubnetResourceId string = ''

@description('Optional. Deny the SCM (Kudu) site to everything but deployerIpRanges.')
param restrictScm bool = false

@description('Optional. CIDR ranges allowed to reach the SCM (Kudu) site when restrictScm is on: where deployments (azd deploy, func publish) run from.')
param deployerIpRanges array = []

@description('Required. Application (client) ID of the Entra app registration that stands for this app (entra-app.bicep): the audience of the tokens App Service Authentication accepts.')
param authClientId string

@description('Required. Object IDs of the only identities whose tokens App Service Authentication admits: API Management\'s system-assigned identity.')
@minLength(1)
param authAllowedPrincipalIds array

// --- app settings the code reads ---

@description('Optional. Table that holds customers and phone numbers (CUSTOMER_TABLE).')
param customerTableName string = 'customers'

@description('Optional. Table that holds operator surges (SURGE_TABLE).')
param surgeTableName string = 'surges'

@description('Optional. NCRONTAB schedule of the scale_schedule timer (SCALE_TIMER_SCHEDULE).')
param scaleTimerSchedule string = '0 */5 * * * *'

@description('Optional. NCRONTAB schedule of the cache_warm timer (WARM_TIMER_SCHEDULE): off-peak, in UTC unless WEBSITE_TIME_ZONE (or TZ) is set.')
param warmTimerSchedule string = '0 30 4 * * *'

@description('Required. JSON day/night/high-risk schedule of always-ready and pre-warmed instances (SCALE_SCHEDULE), as shared/scale/schedule.py reads it.')
param scaleSchedule string

@description('Optional. Log what the scale timer would change and change nothing (SCALE_DRY_RUN).')
param scaleDryRun bool = false

@description('Optional. Also keep the plan minimum (sku.capacity) in step with always-ready (SCALE_SYNC_PLAN_MINIMUM).')
param scaleSyncPlanMinimum bool = false

// --- the lookup key secret (Key Vault references) ---

@description('Required. URI of the lookup key secret\'s current version in Key Vault (https://<vault>.vault.azure.net/secrets/<name>/<version>): LOOKUP_KEY_SECRET is a Key Vault reference pinned to it.')
param lookupKeySecretUri string

@description('Optional. URI of the previous version of the lookup key secret, during a rotation only: LOOKUP_KEY_SECRET_PREVIOUS is then a Key Vault reference pinned to it. Empty: the setting is not deployed, and the app has no previous secret.')
param lookupKeySecretPreviousUri string = ''

@description('Required. Resource ID of the user-assigned identity that resolves the app\'s Key Vault references (keyVaultReferenceIdentity). Its Key Vault Secrets User role on the secret must exist before the site does.')
param keyVaultReferenceIdentityResourceId string

@description('Optional. Further app settings (handler tuning, see docs/settings.md), as a name-to-value object. Values are converted to strings.')
param appSettings object = {}

var armEndpoint = environment().resourceManager
// Telemetry. The app sends its dipguard.* metrics itself, through the Azure Monitor
// OpenTelemetry distro configured for metrics only (shared/telemetry.py), and leaves the rest
// to the host. "Use OpenTelemetry with Azure Functions" (learn.microsoft.com/azure/
// azure-functions/opentelemetry-howto) would instead turn on "telemetryMode": "OpenTelemetry"
// in host.json and PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY. Neither is wanted here:
// - telemetryMode stays the default, so the host keeps writing the requests and traces the
//   alert rules query, and keeps host.json's logging.applicationInsights sampling, which the
//   doc says does not apply in OpenTelemetry mode (nor does portal log streaming);
// - with PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY true, the Python worker
//   (azure-functions-runtime) itself calls configure_azure_monitor() with its defaults when it
//   starts: a log handler on the root logger exporting every line unsampled (the per-dip line
//   at 500/s in a spike), tracing and every instrumentation on the dip path, live metrics and
//   performance counters the host already sends. It is false by default; platformSettings
//   sets it so that nobody turns it on beside the app's own configuration.
// PYTHON_ENABLE_OPENTELEMETRY (the worker hands the host's trace context to OpenTelemetry) is
// left unset: the app records no spans.
var platformSettings = {
  // Functions runtime
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  FUNCTIONS_WORKER_PROCESS_COUNT: string(workerProcessCount)
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  // Application Insights accepts Entra ID tokens only; the host uses the system identity.
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  // The app sends its own metrics and the host everything else: see above platformSettings.
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'false'
  // Identity-based host storage (blobs for keys and timer locks): no connection string.
  AzureWebJobsStorage__accountName: hostStorageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  // The content share takes the account key: Azure Files does not support managed identity for
  // it (Azure Functions developer guide, Configure an identity-based connection, ms.date
  // 09/06/2023). So the key stays; with private networking the host account answers only its
  // private endpoints, reached from the apps' integration subnet (docs/deploy.md, Networks).
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: 'DefaultEndpointsProtocol=https;AccountName=${hostStorageAccount.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${hostStorageAccount.listKeys().keys[0].value}'
  WEBSITE_CONTENTSHARE: contentShareName
  // With private networking the content share is reached through the network too, as the
  // site's contentShareTraffic says: the Functions app settings reference gives this setting
  // for a secured host account, and the routing page keeps it supported (Manage Azure App
  // Service virtual network integration routing, ms.date 11/24/2025).
  WEBSITE_CONTENTOVERVNET: isNetworkIntegrated ? '1' : '0'
  // Remote build on deploy (azd, func publish): pip installs requirements.txt on Linux.
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
  // dipguard: the lookup app serves ivr_lookup, health, warmup and cache_warm.
  DIPGUARD_FUNCTIONS: 'lookup'
  REDIS_URL: redisUrl
  REDIS_CLUSTER: string(redisCluster)
  CustomerStorage__tableServiceUri: customerTableServiceUri
  CUSTOMER_TABLE: customerTableName
  SURGE_TABLE: surgeTableName
  SCALE_TIMER_SCHEDULE: scaleTimerSchedule
  // The timers' schedules are bindings (%...%): the host needs both settings to exist.
  WARM_TIMER_SCHEDULE: warmTimerSchedule
  SCALE_SCHEDULE: scaleSchedule
  SCALE_DRY_RUN: string(scaleDryRun)
  SCALE_SYNC_PLAN_MINIMUM: string(scaleSyncPlanMinimum)
  SCALE_ZONE_REDUNDANT: string(zoneRedundant)
  SCALE_MAX_BURST_LIMIT: string(maxBurstLimit)
  ARM_ENDPOINT: endsWith(armEndpoint, '/') ? substring(armEndpoint, 0, length(armEndpoint) - 1) : armEndpoint
  // The key of every Redis key and table RowKey: a Key Vault reference (see below).
  LOOKUP_KEY_SECRET: '@Microsoft.KeyVault(SecretUri=${lookupKeySecretUri})'
}
// LOOKUP_KEY_SECRET, the key of every Redis key and table RowKey (HMAC-SHA256 of the number
// of the caller), is a Key Vault reference. App Service resolves it with
// keyVaultReferenceIdentity and hands the app the secret; if it cannot, the app gets the
// reference text itself, @Microsoft.KeyVault(...), which the app refuses at start, naming
// LOOKUP_KEY_SECRET (Use Key Vault references as app settings in Azure App Service and Azure
// Functions, ms.date 03/20/2025, "Troubleshoot Key Vault references").
// It is pinned to a version, not versionless: App Service moves a versionless reference to a
// new version on its own within 24 hours (same page, "Understand rotation"), which during a
// rotation could reach an instance before LOOKUP_KEY_SECRET_PREVIOUS does. Pinned, both
// settings change in one app-settings update, and any configuration change restarts the app
// with an immediate refetch of every referenced secret (same section).
// During a rotation only: the previous secret, pinned to its version, which the app tries after
// the current one until the table is reloaded under the new secret (docs/deploy.md, "Rotating
// the lookup key secret"). Otherwise not set at all: a redeploy replaces every app setting, so
// ending the rotation removes it.
var rotationSettings = empty(lookupKeySecretPreviousUri) ? {} : {
  LOOKUP_KEY_SECRET_PREVIOUS: '@Microsoft.KeyVault(SecretUri=${lookupKeySecretPreviousUri})'
}
var appSettingsMap = union(platformSettings, rotationSettings, appSettings)

// Inbound: API Management; everything else is denied (operators use the operator app). API Management is
// admitted by the path its tier documents (api-management-howto-ip-addresses): a classic
// gateway by its static public addresses, a StandardV2 gateway by the subnet it integrates
// with (integrate-vnet-outbound; App Service access restrictions by service endpoint).
// Never by the ApiManagement service tag: it covers API Management's control plane, not the
// v2 gateways' calls to backends, and it is shared by every API Management customer.
var apimRules = [
  for (ip, i) in apimPublicIpAddresses: {
    name: 'apim-${i}'
    description: 'API Management gateway'
    ipAddress: '${ip}/32'
    action: 'Allow'
    priority: 100 + i
  }
]
var apimSubnetRules = [
  {
    name: 'apim-subnet'
    description: 'API Management gateway (outbound virtual network integration)'
    vnetSubnetResourceId: apimSubnetResourceId
    action: 'Allow'
    priority: 100
  }
]
// The SCM (Kudu) site: deployments reach it with Entra ID tokens (basic auth is off below).
// Restricted, it admits only the deployers' ranges and denies everything else.
var deployerRules = [
  for (range, i) in deployerIpRanges: {
    name: 'deployer-${i}'
    description: 'Deployers (azd deploy, func publish)'
    ipAddress: range
    action: 'Allow'
    priority: 100 + i
  }
]
var isNetworkIntegrated = !empty(virtualNetworkSubnetResourceId)

// Exactly one path, or the deployment fails up front rather than lock API Management out.
var apimInboundPathChecked = (empty(apimSubnetResourceId) == empty(apimPublicIpAddresses)) ? string(int('give exactly one of apimPublicIpAddresses (classic tiers) and apimSubnetResourceId (StandardV2)')) : (empty(apimSubnetResourceId) ? 'publicIp' : 'subnet')

resource hostStorageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: hostStorageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'elastic'
  // checkov:skip=CKV_AZURE_225: Zone redundancy is the zoneRedundant parameter: prod.bicepparam turns it on (with at least 3 always-ready instances); dev stays single-zone to stay cheap.
  sku: {
    name: planSku
    tier: 'ElasticPremium'
    // Plan minimum instances; the plan also keeps at least the app's always-ready count.
    capacity: alwaysReadyChecked
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumElasticWorkerCountChecked
    zoneRedundant: zoneRedundant
  }
}

// The system-assigned identity is the identity of the app itself (tables, Redis, host storage, telemetry);
// the user-assigned one only resolves Key Vault references. It and its role exist before
// the site, so the first resolution does not wait on a grant made for a new identity
// ("Some apps need to refer to secrets at creation time, when a system-assigned identity
// is not available yet. In these cases, create a user-assigned identity and give it access
// to the vault in advance.", Use Key Vault references as app settings, ms.date 03/20/2025).
resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  identity: {
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: {
      '${keyVaultReferenceIdentityResourceId}': {}
    }
  }
  kind: 'functionapp,linux'
  // checkov:skip=CKV_AZURE_17: No client certificates: API Management authenticates with an Entra ID token from its managed identity (site_authSettings below) over TLS, and inbound traffic is limited to API Management's addresses.
  // checkov:skip=CKV_AZURE_222: The public endpoint is what API Management calls; ipSecurityRestrictions below deny everything except API Management's addresses or integration subnet. A private endpoint would need a network for the classic tiers too.
  // checkov:skip=CKV_AZURE_213: No App Service health check: it probes without a function key, so the FUNCTION-level /api/health would answer 401 and healthy instances would be taken out of rotation. The Functions scale controller and the alerts watch health instead.
  // checkov:skip=CKV_AZURE_212: Instance count is not App Service's numberOfWorkers here: always-ready instances (minimumElasticInstanceCount) are a parameter, at least 3 when zone redundant.
  properties: {
    serverFarmId: plan.id
    // checkov:skip=CKV_AZURE_16: The site has managed identities, type SystemAssigned plus UserAssigned (its own, and the one that resolves Key Vault references); checkov passes only the exact values SystemAssigned or UserAssigned.
    keyVaultReferenceIdentity: keyVaultReferenceIdentityResourceId
    reserved: true
    httpsOnly: true
    // The runtime's /admin endpoints off; ARM, with RBAC, still does what they did ("Securing
    // Azure Functions", ms.date 01/20/2026, "Disable administrative endpoints"). Not in the
    // published API types yet: Bicep warns (BCP037, silenced here) and ARM applies it.
    #disable-next-line BCP037
    functionsRuntimeAdminIsolationEnabled: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    // Virtual network integration: allTraffic routes the app's calls and the platform's (content
    // share, Key Vault references) into the network, where the private DNS zones resolve the
    // data stores to their private endpoints (Manage Azure App Service virtual network
    // integration routing, ms.date 11/24/2025; supersedes vnetContentShareEnabled).
    virtualNetworkSubnetId: isNetworkIntegrated ? virtualNetworkSubnetResourceId : null
    outboundVnetRouting: {
      allTraffic: isNetworkIntegrated
      applicationTraffic: isNetworkIntegrated
      contentShareTraffic: isNetworkIntegrated
    }
    siteConfig: {
      // Python 3.13 runs on the azure-functions-runtime worker pinned in requirements.txt
      // (learn.microsoft.com/azure/azure-functions/python-313-changes).
      linuxFxVersion: 'Python|3.13'
      minimumElasticInstanceCount: alwaysReadyChecked
      preWarmedInstanceCount: preWarmedInstanceCount
      functionAppScaleLimit: functionAppScaleLimit
      functionsRuntimeScaleMonitoringEnabled: false
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      use32BitWorkerProcess: false
      ipSecurityRestrictionsDefaultAction: 'Deny'
      ipSecurityRestrictions: (apimInboundPathChecked == 'subnet') ? apimSubnetRules : apimRules
      // The legacy form of outboundVnetRouting.applicationTraffic, kept equal to it.
      vnetRouteAllEnabled: isNetworkIntegrated
      // Deployments (azd, func publish) reach the SCM site with Entra ID tokens; basic auth is off below.
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictionsDefaultAction: restrictScm ? 'Deny' : 'Allow'
      scmIpSecurityRestrictions: restrictScm ? deployerRules : []
      cors: {
        allowedOrigins: []
      }
      appSettings: [
        for setting in items(appSettingsMap): {
          name: setting.key
          value: string(setting.value)
        }
      ]
    }
  }
}

// App Service Authentication stands in front of the Functions runtime and admits only a
// token for this app's registration (authClientId) carrying the object ID of an identity in
// authAllowedPrincipalIds: API Management's, which gets one with authentication-managed-
// identity (policies/lookup-api.xml). The built-in authorization policy matches the token's
// oid claim against allowedPrincipals.identities and answers 403 to anyone else; a request
// without a token gets 401 (configure-authentication-provider-aad.md, "Use a built-in
// authorization policy"). This is an ARM write of the site's configuration: it needs neither
// the Functions runtime to be up nor any role assignment to have propagated, so the first
// deployment has no step that waits on either (docs/deploy.md, "First deployment").
// Only /api/health is excluded: it keeps the runtime's own function key for probes. The surge
// endpoints live in the operator app (operator-app.bicep), and /admin is off
// (functionsRuntimeAdminIsolationEnabled) and behind this check besides. The warmup request Elastic
// Premium sends an instance passes only while httpsOnly is on (set above;
// functions-bindings-warmup.md).
resource site_authSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  parent: site
  // checkov reads every sites/config resource as the site's web config; the skips here
  // are its site-config checks, which do not apply to an authsettingsV2 body.
  // checkov:skip=CKV_AZURE_13: This resource is App Service Authentication itself (platform.enabled, requireAuthentication); the check looks for the legacy siteAuthEnabled field.
  // checkov:skip=CKV_AZURE_63: HTTP logging is a web-config setting, not an authentication one; request telemetry goes to Application Insights.
  name: 'authsettingsV2'
  // checkov:skip=CKV_AZURE_65: Detailed error messages are a web-config setting, not an authentication one.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is a web-config setting, not an authentication one.
  // checkov:skip=CKV_AZURE_80: .NET Framework version is a web-config setting; this is a Python app.
  // checkov:skip=CKV_AZURE_88: Azure Files is a web-config/storage setting, not an authentication one; the content share is set in the site's app settings.
  properties: {
    platform: {
      enabled: true
    }
    // checkov:skip=CKV_AZURE_222: Public network access is the site's property (see the skip on the site); this resource holds none.
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          // v2.0 issuer: the registration asks for v2 access tokens (entra-app.bicep).
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            authClientId
          ]
          defaultAuthorizationPolicy: {
            allowedPrincipals: {
              identities: authAllowedPrincipalIds
            }
          }
        }
      }
    }
  }
}

// No FTP or SCM basic-auth publishing credentials: deploy with Entra ID.
resource site_ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource site_scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

@description('The name of the function app.')
output name string = site.name

@description('The resource ID of the function app.')
output resourceId string = site.id

@description('The object ID of the function app\'s system-assigned identity.')
output systemAssignedMIPrincipalId string = site.identity.principalId

@description('The default host name, for example <name>.azurewebsites.net.')
output defaultHostName string = site.properties.defaultHostName

@description('The name of the Elastic Premium plan.')
output planName string = plan.name

@description('The resource ID of the Elastic Premium plan.')
output planResourceId string = plan.id
