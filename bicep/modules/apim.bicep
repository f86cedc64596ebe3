metadata name = 'dipguard API Management service'
metadata description = 'The API Management instance Genesys Cloud calls. A tier with rate-limit-by-key is required, so Consumption is not allowed.'

@description('Required. Name of the API Management service.')
param name string

@description('Optional. Location for all resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to every resource.')
param tags object = {}

// Tiers offered, and why others are not:
// - Consumption has no rate-limit-by-key policy.
// - Basic v2 calls backends from addresses that are not documented as static and has no
//   outbound virtual network integration, so no rule can admit it, and only it, to the
//   function app (api-management-howto-ip-addresses, integrate-vnet-outbound).
// - Premium v2 is not in the SKU list of API version 2024-05-01, the newest GA version, nor
//   of azure-mgmt-apimanagement 5.0.0 that tests/support/bicep_model_check.py checks bodies with.
@description('Optional. Pricing tier. The classic tiers call the function app from static public addresses; StandardV2 calls it through outboundSubnetResourceId.')
@allowed([
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'StandardV2'
])
param skuName string = 'Developer'

@description('Optional. Scale units. Developer allows only 1.')
@minValue(1)
@maxValue(12)
param skuCapacity int = 1

@description('Required. Email address that receives API Management system notifications.')
param publisherEmail string

@description('Optional. Organisation name shown as the API publisher.')
param publisherName string = 'dipguard'

@description('Optional. Subnet (delegated to Microsoft.Web/serverFarms) for outbound virtual network integration. Required on StandardV2; not allowed on the classic tiers, where a subnet would mean virtual network injection instead.')
param outboundSubnetResourceId string = ''

var classicTiers = [
  'Developer'
  'Basic'
  'Standard'
  'Premium'
]
var isClassicTier = contains(classicTiers, skuName)

// A subnet on StandardV2 and none on the classic tiers; otherwise fail the deployment up
// front (int() of a non-number is an error ARM reports at validation time) rather than
// deploy a gateway the function app refuses, or a classic gateway injected into a subnet.
var outboundSubnetChecked = (isClassicTier == empty(outboundSubnetResourceId)) ? outboundSubnetResourceId : string(int('outboundSubnetResourceId is required on StandardV2, whose outbound addresses are not static, and not allowed on the classic tiers'))
// 'External' with a subnet is outbound virtual network integration on the v2 tiers
// (integrate-vnet-outbound): the gateway itself stays public.
var virtualNetworkType = empty(outboundSubnetChecked) ? 'None' : 'External'

// Old protocols and weak ciphers off on both sides of the gateway. Only the classic tiers
// accept these: they "can't be changed" on Consumption, Basic v2, Standard v2 and Premium v2
// (learn.microsoft.com/azure/api-management/api-management-howto-manage-protocols-ciphers).
var securityProperties = {
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'False'
  'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Ciphers.TripleDes168': 'False'
}

resource apiManagement 'Microsoft.ApiManagement/service@2024-05-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_107: Genesys Cloud reaches the gateway over the internet; a VNet-injected gateway adds nothing for a public caller and needs Premium or an SKU-specific subnet.
  // checkov:skip=CKV_AZURE_174: Same reason: the gateway is the public entry point for Genesys Cloud data actions. Callers must present a subscription key and are rate limited.
  sku: {
    name: skuName
    capacity: skuCapacity
  }
  identity: {
    type: 'SystemAssigned'
  }
  // Classic tiers: static outbound addresses and hardened protocols. StandardV2: calls to
  // backends leave from the integrated subnet.
  properties: isClassicTier ? {
    publisherEmail: publisherEmail
    publisherName: publisherName
    publicNetworkAccess: 'Enabled'
    virtualNetworkType: virtualNetworkType
    customProperties: securityProperties
  } : {
    publisherEmail: publisherEmail
    publisherName: publisherName
    publicNetworkAccess: 'Enabled'
    virtualNetworkType: virtualNetworkType
    virtualNetworkConfiguration: {
      subnetResourceId: outboundSubnetChecked
    }
  }
}

@description('The name of the API Management service.')
output name string = apiManagement.name

@description('The resource ID of the API Management service.')
output resourceId string = apiManagement.id

@description('The gateway base URL, for example https://<name>.azure-api.net.')
output gatewayUrl string = apiManagement.properties.gatewayUrl

@description('The object ID of the service\'s system-assigned identity.')
output systemAssignedMIPrincipalId string = apiManagement.identity.principalId

@description('The static public IP addresses a classic-tier gateway calls backends from; empty on StandardV2, whose addresses are not static and must not be used in rules.')
output publicIpAddresses array = isClassicTier ? apiManagement.properties.publicIPAddresses : []
