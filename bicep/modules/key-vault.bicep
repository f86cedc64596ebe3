metadata name = 'dipguard lookup key vault'
metadata description = 'A Key Vault with Azure RBAC authorization, soft delete and purge protection that holds the lookup key secret (LOOKUP_KEY_SECRET), the user-assigned identity the function app resolves its Key Vault references with, and that identity\'s Key Vault Secrets User role on the one secret.'

@description('Required. Name of the Key Vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Name of the user-assigned identity the function app resolves its Key Vault references with (keyVaultReferenceIdentity).')
param referenceIdentityName string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Name of the secret that holds the lookup key secret.')
param secretName string = 'lookup-key-secret'

// The value is written only when one is given: on the first deployment and when a rotation
// starts (docs/deploy.md, "Rotating the lookup key secret"). Empty leaves the secret in the
// vault as it is, so a redeploy never changes it; the secret must then exist already, or the
// deployment fails on the `existing` read below instead of starting an app that cannot
// resolve its reference. @secure(): ARM keeps the value out of the deployment's inputs,
// outputs and logs.
@description('Optional. The lookup key secret to write as a new version of the secret: at least 32 characters. Empty: keep the secret as it is.')
@secure()
param secretValue string = ''

@description('Optional. Days a deleted vault or secret stays recoverable (soft delete) before it is purged.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Optional. Resource ID of the subnet for a private endpoint. Given: the vault gets a private endpoint (group vault), its public network access is disabled and its firewall denies everything else. Empty: the public endpoint stays open, guarded by Azure RBAC on the one secret.')
param privateEndpointSubnetResourceId string = ''

@description('Optional. Resource ID of the privatelink.vaultcore.azure.net private DNS zone; required with privateEndpointSubnetResourceId.')
param privateDnsZoneResourceId string = ''

var isPrivate = !empty(privateEndpointSubnetResourceId)

// Key Vault Secrets User: read secret contents, and nothing else (rbac-guide, "Azure
// built-in roles for Key Vault data plane operations").
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

// The app refuses a secret shorter than 32 characters and would not start, so a deployment
// that would write one fails here instead.
var writesSecret = !empty(secretValue)
var secretTooShort = writesSecret && length(secretValue) < 32

resource referenceIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: referenceIdentityName
  location: location
  tags: tags
}

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_109: The firewall follows privateEndpointSubnetResourceId: deny with private networking (prod.bicepparam), where the apps resolve their references through the private endpoint over their virtual network integration. Dev's apps are not network integrated, and App Service resolves references from addresses that are not the app's documented ones (app-service-key-vault-references, "Access network-restricted vaults"), so dev keeps it open; checkov cannot evaluate the condition.
  // checkov:skip=CKV_AZURE_189: Same reason as CKV_AZURE_109: public network access is Disabled with private networking and Enabled only in dev, guarded by Azure RBAC on the one secret.
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    // Nothing but the app's reference reads the vault: no VM, disk encryption or template
    // (getSecret) access.
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: isPrivate ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: isPrivate ? 'Deny' : 'Allow'
      bypass: 'None'
    }
  }
}

resource vault_secret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (writesSecret) {
  parent: vault
  name: secretName
  // checkov:skip=CKV_AZURE_114: contentType is set below (text/plain); checkov reads no property of a resource declared with if (...), so it reports the content type missing.
  // checkov:skip=CKV_AZURE_41: No expiry date: an expired secret would no longer resolve, LOOKUP_KEY_SECRET would reach the app as the reference text, and the app would stop answering. The secret is rotated by the documented procedure instead (docs/deploy.md).
  properties: {
    value: secretTooShort ? string(int('the lookup key secret must be at least 32 characters')) : secretValue
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

// The secret already in the vault, when this deployment writes none.
resource vault_secretCurrent 'Microsoft.KeyVault/vaults/secrets@2024-11-01' existing = {
  parent: vault
  name: secretName
}

// Scoped to the one secret (all its versions, so a reference pinned to the previous version
// resolves too), not the vault: the identity exists for this reference alone.
resource vault_secretCurrent_secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, secretName, referenceIdentity.id, keyVaultSecretsUserRoleId)
  scope: vault_secretCurrent
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: referenceIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'The function app resolves LOOKUP_KEY_SECRET (and LOOKUP_KEY_SECRET_PREVIOUS) with this identity.'
  }
  dependsOn: [
    vault_secret
  ]
}

// Group vault, zone privatelink.vaultcore.azure.net (Azure Private Endpoint DNS
// configuration). App Service resolves the apps' Key Vault references through their virtual
// network integration when all their traffic is routed into it (function-app.bicep).
module vault_privateEndpoint 'private-endpoint.bicep' = if (isPrivate) {
  name: '${name}-pe'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetResourceId: privateEndpointSubnetResourceId
    privateLinkServiceId: vault.id
    groupId: 'vault'
    privateDnsZoneResourceId: privateDnsZoneResourceId
  }
}

@description('The name of the Key Vault.')
output name string = vault.name

@description('The resource ID of the Key Vault.')
output resourceId string = vault.id

@description('The name of the lookup key secret.')
output secretName string = secretName

@description('URI of the lookup key secret\'s current version (no value), for a Key Vault reference pinned to it.')
output secretUriWithVersion string = writesSecret ? vault_secret!.properties.secretUriWithVersion : vault_secretCurrent.properties.secretUriWithVersion

@description('The version ID of the lookup key secret\'s current version (no value): the version a rotation passes as lookupKeySecretPreviousVersion.')
output secretVersion string = last(split(writesSecret ? vault_secret!.properties.secretUriWithVersion : vault_secretCurrent.properties.secretUriWithVersion, '/'))

@description('The data-plane URI of the vault, for example https://<name>.vault.azure.net/.')
output vaultUri string = vault.properties.vaultUri

@description('The resource ID of the identity the function app resolves its Key Vault references with.')
output referenceIdentityResourceId string = referenceIdentity.id

@description('The resource ID of that identity\'s Key Vault Secrets User role assignment on the secret.')
output referenceRoleAssignmentId string = vault_secretCurrent_secretsUser.id
