metadata name = 'dipguard operator function app'
metadata description = 'The operator function app, on the lookup app\'s Elastic Premium plan: the surge switch and the scale_schedule timer (DIPGUARD_FUNCTIONS=operator), from the same code. Operators reach it with an Entra ID token through App Service Authentication (the app checks the Surge.Operate role), and its identity holds the control-plane roles the lookup app does not: Website Contributor on the lookup site and Web Plan Contributor on the plan.'

// Why a second app on the same plan: functions that need more privilege belong in a separate
// function app ("Securing Azure Functions", ms.date 01/20/2026, "Organize functions by
// privilege"), and every function app in a Premium plan shares the plan's instances ("Azure
// Functions Premium plan", ms.date 12/15/2025, "Billing"), so the operator app runs on
// instances the plan keeps for the lookup app anyway and adds no always-ready bill.

@description('Required. Name of the operator function app.')
param name string

@description('Required. Name of the Elastic Premium plan the lookup app runs on (function-app.bicep); the operator app runs there too, and its identity gets Web Plan Contributor on it.')
param planName string

@description('Required. Name of the lookup function app: the site the scale timer scales (SCALE_SITE_NAME), on which the operator identity gets Website Contributor.')
param lookupSiteName string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Value of the azd-service-name tag, which must match a service name in azure.yaml.')
param azdServiceName string = 'operator'

@description('Optional. The plan is zone redundant: the app then keeps three always-ready instances, as the plan does.')
param zoneRedundant bool = false

@description('Optional. The region\'s Linux Elastic Premium maximum burst (SCALE_MAX_BURST_LIMIT), as the lookup app has it.')
@minValue(1)
@maxValue(100)
param maxBurstLimit int = 20

// --- network: the same values as the lookup app's (function-app.bicep), which explains them ---

@description('Optional. Subnet (delegated to Microsoft.Web/serverFarms) the app integrates with: the lookup app\'s, since both apps are on one plan. Empty: no virtual network integration (dev).')
param virtualNetworkSubnetResourceId string = ''

@description('Optional. Deny the SCM (Kudu) site to everything but deployerIpRanges.')
param restrictScm bool = false

@description('Optional. CIDR ranges allowed to reach the SCM (Kudu) site when restrictScm is on: where deployments (azd deploy, func publish) run from.')
param deployerIpRanges array = []

// --- dependencies ---

@description('Required. Name of the storage account the Functions host uses (AzureWebJobsStorage, content share).')
param hostStorageAccountName string

@description('Required. Name of the operator app\'s own Azure Files share in the host storage account (each app needs its own).')
param contentShareName string

@description('Required. Table service endpoint of the customer data account (CustomerStorage__tableServiceUri).')
param customerTableServiceUri string

@description('Required. Redis URL without secrets, for example rediss://<host>:10000/0 (Entra ID token auth).')
param redisUrl string

@description('Optional. The Redis database runs the OSS cluster policy, so the app connects cluster-aware.')
param redisCluster bool = false

@description('Required. Application Insights connection string.')
param appInsightsConnectionString string

@description('Optional. CIDR ranges operators call from. Empty: any address reaches the app, and App Service Authentication alone decides who gets in. Given: everything else is denied as well.')
param operatorIpRanges array = []

@description('Required. Application (client) ID of the operators\' Entra app registration (entra-app.bicep, with the Surge.Operate app role): the audience of the tokens App Service Authentication accepts.')
param authClientId string

// --- app settings the code reads ---

@description('Optional. Table that holds customers and phone numbers (CUSTOMER_TABLE).')
param customerTableName string = 'customers'

@description('Optional. Table that holds operator surges (SURGE_TABLE).')
param surgeTableName string = 'surges'

@description('Optional. NCRONTAB schedule of the scale_schedule timer (SCALE_TIMER_SCHEDULE).')
param scaleTimerSchedule string = '0 */5 * * * *'

@description('Optional. NCRONTAB schedule of the cache_warm timer (WARM_TIMER_SCHEDULE), as the lookup app has it: the settings are the same on both apps.')
param warmTimerSchedule string = '0 30 4 * * *'

@description('Required. JSON day/night/high-risk schedule of always-ready and pre-warmed instances (SCALE_SCHEDULE), as shared/scale/schedule.py reads it.')
param scaleSchedule string

@description('Optional. Log what the scale timer would change and change nothing (SCALE_DRY_RUN).')
param scaleDryRun bool = false

@description('Optional. Also keep the plan minimum (sku.capacity) in step with always-ready (SCALE_SYNC_PLAN_MINIMUM).')
param scaleSyncPlanMinimum bool = false

@description('Required. URI of the lookup key secret\'s current version in Key Vault: LOOKUP_KEY_SECRET is a Key Vault reference pinned to it (a surge starts a warm of the read model, whose keys it makes).')
param lookupKeySecretUri string

@description('Optional. URI of the previous version of the lookup key secret, during a rotation only (LOOKUP_KEY_SECRET_PREVIOUS).')
param lookupKeySecretPreviousUri string = ''

@description('Required. Resource ID of the user-assigned identity that resolves the app\'s Key Vault references (keyVaultReferenceIdentity); it holds Key Vault Secrets User on the secret.')
param keyVaultReferenceIdentityResourceId string

@description('Optional. Further app settings (handler tuning, see docs/settings.md), as a name-to-value object: the same as the lookup app\'s.')
param appSettings object = {}

var armEndpoint = environment().resourceManager
// The same settings as the lookup app (function-app.bicep explains each; a test holds the two
// lists together), but for three: DIPGUARD_FUNCTIONS, its own content share, and
// SCALE_SITE_NAME, the lookup app, which the scale timer scales instead of this app.
var platformSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  FUNCTIONS_WORKER_PROCESS_COUNT: '1'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'false'
  AzureWebJobsStorage__accountName: hostStorageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: 'DefaultEndpointsProtocol=https;AccountName=${hostStorageAccount.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${hostStorageAccount.listKeys().keys[0].value}'
  WEBSITE_CONTENTSHARE: contentShareName
  // With private networking the content share is reached through the network too, as the
  // site's contentShareTraffic says: the Functions app settings reference gives this setting
  // for a secured host account, and the routing page keeps it supported (Manage Azure App
  // Service virtual network integration routing, ms.date 11/24/2025).
  WEBSITE_CONTENTOVERVNET: isNetworkIntegrated ? '1' : '0'
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
  // dipguard: the operator app serves surge, scale_schedule and health.
  DIPGUARD_FUNCTIONS: 'operator'
  REDIS_URL: redisUrl
  REDIS_CLUSTER: string(redisCluster)
  CustomerStorage__tableServiceUri: customerTableServiceUri
  CUSTOMER_TABLE: customerTableName
  SURGE_TABLE: surgeTableName
  SCALE_TIMER_SCHEDULE: scaleTimerSchedule
  WARM_TIMER_SCHEDULE: warmTimerSchedule
  SCALE_SCHEDULE: scaleSchedule
  SCALE_DRY_RUN: string(scaleDryRun)
  SCALE_SYNC_PLAN_MINIMUM: string(scaleSyncPlanMinimum)
  SCALE_ZONE_REDUNDANT: string(zoneRedundant)
  SCALE_MAX_BURST_LIMIT: string(maxBurstLimit)
  // The scale timer's target (shared/scale/target.py): the lookup app, not this one.
  SCALE_SITE_NAME: lookupSiteName
  ARM_ENDPOINT: endsWith(armEndpoint, '/') ? substring(armEndpoint, 0, length(armEndpoint) - 1) : armEndpoint
  LOOKUP_KEY_SECRET: '@Microsoft.KeyVault(SecretUri=${lookupKeySecretUri})'
}
var rotationSettings = empty(lookupKeySecretPreviousUri) ? {} : {
  LOOKUP_KEY_SECRET_PREVIOUS: '@Microsoft.KeyVault(SecretUri=${lookupKeySecretPreviousUri})'
}
var appSettingsMap = union(platformSettings, rotationSettings, appSettings)

// Always-ready: one instance, or three on a zone-redundant plan, which keeps three anyway.
var alwaysReady = zoneRedundant ? 3 : 1

var operatorRules = [
  for (range, i) in operatorIpRanges: {
    name: 'operator-${i}'
    description: 'Operators'
    ipAddress: range
    action: 'Allow'
    priority: 200 + i
  }
]

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

// Website Contributor (the lookup site's always-ready and pre-warmed instances) and Web Plan
// Contributor (the plan's burst and minimum): what the scale_schedule timer and the surge
// switch need, scoped to the lookup site and the plan only.
var websiteContributorRoleId = 'de139f84-1756-47ae-9be6-808fbbe84772'
var webPlanContributorRoleId = '2cc479cb-7b4d-49a8-b449-8c00fd0f0a4b'

resource hostStorageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: hostStorageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-11-01' existing = {
  name: planName
}

resource lookupSite 'Microsoft.Web/sites@2024-11-01' existing = {
  name: lookupSiteName
}

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
  // checkov:skip=CKV_AZURE_17: No client certificates: operators authenticate with Entra ID tokens through App Service Authentication (site_authSettings below).
  // checkov:skip=CKV_AZURE_222: Operators call the public endpoint with an Entra ID token that App Service Authentication checks, from the ranges in operatorIpRanges when given.
  // checkov:skip=CKV_AZURE_213: No App Service health check: it probes without a function key, so the FUNCTION-level /api/health would answer 401 and the instance would be taken out of rotation.
  // checkov:skip=CKV_AZURE_212: The operator app needs one instance (three on a zone-redundant plan); it shares the plan's instances with the lookup app.
  properties: {
    serverFarmId: plan.id
    // checkov:skip=CKV_AZURE_16: The site has managed identities, type SystemAssigned plus UserAssigned; checkov passes only the exact values SystemAssigned or UserAssigned.
    keyVaultReferenceIdentity: keyVaultReferenceIdentityResourceId
    reserved: true
    httpsOnly: true
    // The runtime's /admin endpoints off, as on the lookup app (function-app.bicep).
    #disable-next-line BCP037
    functionsRuntimeAdminIsolationEnabled: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    // Virtual network integration, as on the lookup app (function-app.bicep).
    virtualNetworkSubnetId: isNetworkIntegrated ? virtualNetworkSubnetResourceId : null
    outboundVnetRouting: {
      allTraffic: isNetworkIntegrated
      applicationTraffic: isNetworkIntegrated
      contentShareTraffic: isNetworkIntegrated
    }
    siteConfig: {
      linuxFxVersion: 'Python|3.13'
      minimumElasticInstanceCount: alwaysReady
      preWarmedInstanceCount: 0
      // Never bursts: a timer and a few operator calls.
      functionAppScaleLimit: alwaysReady
      functionsRuntimeScaleMonitoringEnabled: false
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      use32BitWorkerProcess: false
      ipSecurityRestrictionsDefaultAction: empty(operatorIpRanges) ? 'Allow' : 'Deny'
      ipSecurityRestrictions: operatorRules
      vnetRouteAllEnabled: isNetworkIntegrated
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

// App Service Authentication admits only a token for the operators' registration
// (authClientId), from this tenant: a request without one gets 401. Entra ID issues that
// token only to a user or application assigned one of the registration's app roles
// (appRoleAssignmentRequired, entra-app.bicep), and the app itself checks that the roles claim
// of X-MS-CLIENT-PRINCIPAL holds Surge.Operate (403 otherwise), since the built-in
// authorization policy checks principals and client applications, not roles
// ("Configure your App Service or Azure Functions app to use Microsoft Entra sign-in",
// "Use a built-in authorization policy"). Only /api/health is excluded.
resource site_authSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  parent: site
  // checkov:skip=CKV_AZURE_13: This resource is App Service Authentication itself (platform.enabled, requireAuthentication); the check looks for the legacy siteAuthEnabled field.
  // checkov:skip=CKV_AZURE_63: HTTP logging is a web-config setting, not an authentication one.
  name: 'authsettingsV2'
  // checkov:skip=CKV_AZURE_65: Detailed error messages are a web-config setting, not an authentication one.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is a web-config setting, not an authentication one.
  // checkov:skip=CKV_AZURE_80: .NET Framework version is a web-config setting; this is a Python app.
  // checkov:skip=CKV_AZURE_88: Azure Files is a web-config/storage setting, not an authentication one.
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
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            authClientId
          ]
        }
      }
    }
  }
}

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

resource lookupSite_websiteContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lookupSite.id, site.id, websiteContributorRoleId)
  scope: lookupSite
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', websiteContributorRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Operator app (scale_schedule, surge): read and change the lookup app\'s always-ready and pre-warmed instances.'
  }
}

resource plan_webPlanContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(plan.id, site.id, webPlanContributorRoleId)
  scope: plan
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', webPlanContributorRoleId)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'Operator app (scale_schedule, surge): change the plan maximum burst and minimum instances.'
  }
}

@description('The name of the operator function app.')
output name string = site.name

@description('The resource ID of the operator function app.')
output resourceId string = site.id

@description('The object ID of the operator app\'s system-assigned identity.')
output systemAssignedMIPrincipalId string = site.identity.principalId

@description('The default host name, for example <name>.azurewebsites.net: operators call https://<host>/api/surge.')
output defaultHostName string = site.properties.defaultHostName
