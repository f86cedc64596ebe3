metadata name = 'dipguard app registration'
metadata description = 'A Microsoft Entra app registration and its service principal that stand for one function app: the audience of the tokens App Service Authentication on that app accepts. For the lookup app, API Management asks for a token with it as the audience; for the operator app, it also defines the operators\' app role and requires an assignment of it (made by entra-role-assignments.bicep).'

// Microsoft Graph resources in a Bicep deployment need the Microsoft Graph extension,
// declared in bicep/bicepconfig.json (learn.microsoft.com/graph/templates/bicep/quickstart-create-bicep-interactive-mode).
extension microsoftGraphV1

@description('Required. Unique name of the registration in its tenant: Microsoft Graph\'s alternate key for it, so a redeploy updates the same registration instead of adding one.')
@maxLength(120)
param uniqueName string

@description('Required. Display name of the registration.')
param displayName string

@description('Optional. App roles the registration defines, each { value, displayName, description, allowedMemberTypes }. The value is what a token\'s roles claim carries; each role\'s id is derived from uniqueName and the value, so it stays the same on every redeploy.')
param appRoles array = []

@description('Optional. Entra ID issues tokens for this registration only to users, groups and applications assigned one of its app roles (appRoleAssignmentRequired on the service principal).')
param appRoleAssignmentRequired bool = false

@description('Optional. Let signed-in users ask for a token for this registration from the Azure CLI: a delegated permission (user_impersonation) that the Azure CLI is pre-authorized for, so no consent prompt is needed. Off for a registration only services call.')
param azureCliSignIn bool = false

// The Azure CLI's public client application ID (Microsoft first-party application).
var azureCliAppId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46'
var userScopeId = guid(uniqueName, 'user_impersonation')

var appRoleDefinitions = [
  for role in appRoles: {
    id: guid(uniqueName, 'appRole', role.value)
    value: role.value
    displayName: role.displayName
    description: role.description
    allowedMemberTypes: role.allowedMemberTypes
    isEnabled: true
  }
]

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  appRoles: appRoleDefinitions
  api: {
    // v2 access tokens, whose issuer is the v2.0 one the app's authentication checks.
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: azureCliSignIn ? [
      {
        id: userScopeId
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Call ${displayName}'
        adminConsentDescription: 'Call ${displayName} as the signed-in user; what the user may do is decided by the app roles assigned to them.'
        userConsentDisplayName: 'Call ${displayName}'
        userConsentDescription: 'Call ${displayName} as you.'
      }
    ] : []
    preAuthorizedApplications: azureCliSignIn ? [
      {
        appId: azureCliAppId
        delegatedPermissionIds: [
          userScopeId
        ]
      }
    ] : []
  }
}

// Entra ID issues tokens only for an application that has a service principal in the tenant.
// With appRoleAssignmentRequired, only principals assigned an app role get one ("Restrict a
// Microsoft Entra app to a set of users", howto-restrict-your-app-to-a-set-of-users).
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
  appRoleAssignmentRequired: appRoleAssignmentRequired
}

@description('The unique name of the registration.')
output name string = application.uniqueName

@description('The object ID of the registration in Microsoft Graph.')
output resourceId string = application.id

@description('The application (client) ID: the audience of the tokens the app accepts.')
output clientId string = application.appId

@description('The object ID of the registration\'s service principal.')
output servicePrincipalId string = servicePrincipal.id
